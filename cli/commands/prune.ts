import type { Command } from 'commander';
import { openContainer, printJson, printTable, rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('prune')
    .description("remove a container's snapshots its retention does not keep (each schedule's rules over its own snapshots, or --keep over all)")
    .argument('<name>', 'container name')
    .option('--keep <rules>', 'rules to apply to every snapshot instead: last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N')
    .option('--schedule <name>', "only this schedule's snapshots")
    .option('--tz <zone>', 'time zone of the periods with --keep (default: the schedule\'s, else the host\'s)')
    .option('-n, --dry-run', 'show what would be kept and removed; remove nothing')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { pruneSnapshots, pruneTargets } = await import('../../backup/prune');
      const { parseKeepPolicy } = await import('../../backup/retention');
      const { ScheduleStore } = await import('../../backup/schedules');
      const root = rootOf(cmd);
      const c = openContainer(cmd, name);
      const targets = pruneTargets(new ScheduleStore(root).list(), c.name, o.keep === undefined ? undefined : parseKeepPolicy(o.keep), o.schedule);
      if (o.tz) for (const t of targets) t.timeZone = o.tz;
      const rows = await pruneSnapshots(c, targets, { dryRun: o.dryRun === true });
      if (o.json) return printJson(rows);
      printTable([
        ['SNAPSHOT', 'CREATED', 'SCHEDULE', 'ACTION', 'KEPT BY'],
        ...rows.map((r) => [r.name, r.createdAt, r.schedule ?? '-', r.error ? `remove failed: ${r.error}` : o.dryRun && r.action === 'remove' ? 'would remove' : r.action, r.reason ?? '-']),
      ]);
      const removed = rows.filter((r) => r.action === 'remove' && !r.error).length;
      if (!o.dryRun) print(`${removed} removed\n`);
      if (rows.some((r) => r.error)) process.exitCode = 1;
    });
}
