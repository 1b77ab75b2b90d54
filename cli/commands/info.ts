import type { Command } from 'commander';
import { openContainer, printJson, printTable } from '../context';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('info')
    .description('state, init pid, ip, cgroup usage, config')
    .argument('<name>', 'container name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { formatBytes } = await import('../../lib/units');
      const info = remoteOf(cmd)
        ? await onRemote(cmd, async (client, api) => (await import('../../daemon/convert')).infoFromWire(await client.unary(api.Containers.Info, { name }, { timeoutMs: 60_000 })))
        : (await import('../../ops/info')).containerInfo(openContainer(cmd, name));
      if (o.json) return printJson(info);
      const usage = info.cgroup;
      const limit = (n?: number) => (n === undefined ? 'unlimited' : formatBytes(n));
      const rows: string[][] = [
        ['name', info.name],
        ['state', info.state + (info.migratedTo ? ` (migrated to ${info.migratedTo.host} at ${info.migratedTo.at})` : info.checkpoint ? ` (checkpointed as ${info.checkpoint})` : info.exit ? ` (${describeExit(info.exit)})` : '')],
        ['init pid', info.initPid ? String(info.initPid) : '-'],
        ['ip', info.ip ?? '-'],
        ['template', info.template],
        ['pool', info.pool],
        ['security', info.security.privileged
          ? `WARNING: ${info.security.warning}`
          : `user namespace, root is host uid ${info.security.uid} (${info.security.size} ids${info.security.shared ? ', shared range' : ''}, rootfs ${info.security.rootfs})`],
        ['created', info.createdAt],
        ['started', info.startedAt ?? '-'],
      ];
      if (usage) {
        rows.push(['memory', `${usage.memoryBytes !== undefined ? formatBytes(usage.memoryBytes) : '?'} of ${limit(info.config.limits.memoryBytes)}`]);
        rows.push(['pids', `${usage.pids ?? '?'} of ${info.config.limits.pids ?? 'unlimited'}`]);
        if (usage.oomKills) rows.push(['oom kills', String(usage.oomKills)]);
      }
      printTable(rows);
    });
}

function describeExit(exit: { exitCode?: number; signal?: string; oomKilled?: boolean }): string {
  const how = exit.signal ? `killed by ${exit.signal}` : exit.exitCode !== undefined ? `exit code ${exit.exitCode}` : 'exit unknown';
  return exit.oomKilled ? `${how}, out of memory` : how;
}
