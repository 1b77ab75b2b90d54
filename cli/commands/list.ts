import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('list')
    .alias('ls')
    .description('list containers')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const all = remoteOf(cmd)
        ? await onRemote(cmd, async (client, api) => {
          const { infoFromWire } = await import('../../daemon/convert');
          return ((await client.unary(api.Containers.List, {}, { timeoutMs: 60_000 })).containers ?? []).map(infoFromWire);
        })
        : (await import('../../ops/info')).listContainers(rootOf(cmd));
      if (o.json) return printJson(all);
      printTable([['NAME', 'STATE', 'PID', 'IP', 'TEMPLATE'], ...all.map((c) => [c.name, c.migratedTo ? `${c.state} (migrated to ${c.migratedTo.host})` : c.state, c.initPid ? String(c.initPid) : '-', c.ip ?? '-', c.template])]);
    });
}
