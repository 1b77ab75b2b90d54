import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print, printError } from '../output';

export function register(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('backup schedules, run by the daemon: list (the default), add, run, rm');

  schedule
    .command('list', { isDefault: true })
    .alias('ls')
    .description('every schedule: its next run, its last run (ok / failed / skipped, why, how long) and bytes shipped')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { listSchedules } = await import('../../backup/commands');
      const rejected: { key: string; why: string }[] = [];
      const rows = listSchedules(rootOf(cmd), Date.now(), rejected);
      for (const r of rejected) printError(`tsvz: schedule ${r.key} is broken and never runs: ${r.why}\n`);
      if (o.json) return printJson(rows);
      const when = (t?: string) => t ?? '-';
      printTable([
        ['CONTAINER', 'NAME', 'CRON', 'ZONE', 'KEEP', 'MODE', 'TO', 'NEXT', 'LAST'],
        ...rows.map((r) => [
          r.container, r.name, r.cron, r.timeZone, r.keepText || 'all', `${r.mode}${r.stateful ? '+memory' : ''}`, r.to ?? '-', r.lagMs !== undefined ? `owed for ${Math.round(r.lagMs / 1000)} s` : when(r.nextRun),
          r.last ? `${r.last.startedAt} ${r.last.outcome}${r.last.why ? ` (${r.last.why})` : ''} ${r.last.durationMs} ms${r.last.bytesShipped !== undefined ? ` ${r.last.bytesShipped} bytes shipped` : ''}` : 'never',
        ]),
      ]);
    });

  schedule
    .command('add')
    .description("add a schedule: `tsvz schedule add p1 hourly --cron '0 * * * *' --keep last=3,daily=7`")
    .argument('<container>', 'container name')
    .argument('<name>', 'schedule name (the prefix of its snapshots)')
    .requiredOption('--cron <expr>', 'when: five cron fields (minute hour day month weekday)')
    .option('--keep <rules>', 'retention: last=N,hourly=N,daily=N,weekly=N,monthly=N,yearly=N (none: keep all)')
    .option('--mode <mode>', 'snapshot (running) | suspend (frozen around it) | stop (stopped around it)', 'snapshot')
    .option('--stateful', 'memory too (CRIU): such a backup restores running')
    .option('--tz <zone>', 'IANA time zone the cron and the retention periods are read in (default: the host\'s)')
    .option('--to <remote>', 'ship each new snapshot to this remote\'s backup store')
    .option('--bwlimit <rate>', 'bytes a second a send may use, e.g. 10M')
    .action(async (container: string, name: string, o, cmd: Command) => {
      const { addSchedule } = await import('../../backup/commands');
      const s = await addSchedule(rootOf(cmd), { container, name, cron: o.cron, keep: o.keep, mode: o.mode, stateful: o.stateful === true, timeZone: o.tz, to: o.to, bwlimit: o.bwlimit });
      print(`added ${s.container}/${s.name}: next run ${s.nextRun ?? 'never'}\n`);
      const { daemonStatus } = await import('../../daemon/status');
      if (!daemonStatus(rootOf(cmd)).running) printError('tsvz: note: no daemon serves this root: schedules run only under `tsvz daemon`\n');
    });

  schedule
    .command('run')
    .description('run a schedule once, now, through the same path as a timed run')
    .argument('<container>', 'container name')
    .argument('<name>', 'schedule name')
    .action(async (container: string, name: string, _o, cmd: Command) => {
      const { runScheduleNow } = await import('../../backup/commands');
      const r = await runScheduleNow(rootOf(cmd), container, name);
      if (r.outcome !== 'ok') {
        const { isErrorCode, TsvzError } = await import('../../lib/errors');
        throw new TsvzError(r.outcome === 'skipped' ? 'EBUSY' : isErrorCode(r.code) ? r.code : 'EINTERNAL', `run ${r.outcome}: ${r.why ?? ''}`);
      }
      print(`${r.snapshot}${r.bytesShipped !== undefined ? ` (${r.bytesShipped} bytes shipped)` : ''}${r.pruned?.length ? `, pruned ${r.pruned.join(', ')}` : ''}\n`);
    });

  schedule
    .command('rm')
    .description('remove a schedule (its snapshots stay)')
    .argument('<container>', 'container name')
    .argument('<name>', 'schedule name')
    .action(async (container: string, name: string, _o, cmd: Command) => {
      const { ScheduleStore } = await import('../../backup/schedules');
      await new ScheduleStore(rootOf(cmd)).remove(container, name);
      print(`removed ${container}/${name}\n`);
    });
}
