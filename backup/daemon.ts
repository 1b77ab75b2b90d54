import type { DaemonContext } from '../daemon/server';
import { backupBody } from './run';
import { Scheduler } from './scheduler';
import { ScheduleStore } from './schedules';

/** The daemon's backup schedules: a Scheduler on the system clock, its runs logged and counted in the metrics. */
export function startScheduler(d: DaemonContext): Scheduler {
  const s = new Scheduler(new ScheduleStore(d.root), backupBody(d.root), {
    log: d.log,
    onRun: (sched, r) => {
      const labels = { schedule: `${sched.container}/${sched.name}` };
      d.metrics.backupRuns.add({ ...labels, outcome: r.outcome });
      if (r.outcome === 'skipped') return;
      d.metrics.backupDuration.set(labels, r.durationMs / 1000);
      if (r.outcome === 'ok') d.metrics.backupLastSuccess.set(labels, Math.floor(Date.parse(r.startedAt) / 1000));
      if (r.bytesShipped) d.metrics.backupShipped.add(labels, r.bytesShipped);
    },
  });
  void s.start().catch((err: Error) => d.log.warn('backup scheduler did not start', { error: err.message }));
  return s;
}
