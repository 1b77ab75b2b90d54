import path = require('node:path');
import { BusyError, codeOf } from '../lib/errors';
import { withLock } from '../lib/lock';
import { dueAt } from './timing';
import { RunRecord, Schedule, ScheduleStore } from './schedules';
import { processAlive } from '../lib/proc';

/**
 * Running schedules: the daemon's timer loop (Scheduler) and the one code
 * path every run takes, timed or `schedule run` (executeRun). A run holds
 * ROOT/locks/backup-run-CONTAINER.lock without waiting: one that finds it
 * held (the previous run of that container still going, in this process or
 * another) is skipped and recorded so.
 */

/** What a run does once it holds its container: snapshot, ship, prune (backup/run.ts). */
export type RunBody = (s: Schedule) => Promise<Pick<RunRecord, 'snapshot' | 'bytesShipped' | 'pruned'>>;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t; },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SchedulerLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Run `s` now, through its container's run lock; the record is written whatever happens. */
export async function executeRun(store: ScheduleStore, s: Schedule, trigger: RunRecord['trigger'], body: RunBody, opts: { slot?: number; clock?: Clock } = {}): Promise<RunRecord> {
  const clock = opts.clock ?? systemClock;
  const started = clock.now();
  const base = { startedAt: new Date(started).toISOString(), trigger } as const;
  const slot = opts.slot !== undefined ? { lastSlot: new Date(opts.slot).toISOString() } : {};
  let record: RunRecord;
  try {
    const lock = path.join(store.root.locksDir, `backup-run-${s.container}.lock`);
    const done = await withLock(lock, `backups of ${s.container}`, 0, async () => {
      await store.updateRuns(s.container, s.name, (r) => ({ ...r, ...slot, running: { pid: process.pid, startedAt: base.startedAt, trigger } }));
      return body(s);
    });
    record = { outcome: 'ok', ...base, durationMs: clock.now() - started, ...done };
  } catch (err) {
    const skipped = err instanceof BusyError;
    record = {
      outcome: skipped ? 'skipped' : 'failed',
      why: skipped ? `the previous run for ${s.container} was still going` : (err as Error).message,
      code: codeOf(err),
      ...base, durationMs: clock.now() - started,
    };
  }
  await store.updateRuns(s.container, s.name, ({ running, ...r }) => ({
    ...r, ...slot, last: record,
    ...(record.outcome === 'skipped' && running ? { running } : {}),
    failures: r.failures + (record.outcome === 'failed' ? 1 : 0),
    ...(record.outcome === 'ok' ? { lastSuccessAt: record.startedAt } : {}),
  }));
  return record;
}

/** The longest the loop sleeps: a wall clock that jumps is noticed within this. */
export const MAX_SLEEP_MS = 60_000;

export class Scheduler {
  private timer: unknown;
  private stopped = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Broken schedules already logged (once each). */
  private readonly warned = new Set<string>();
  /** Slots launched by this process, before their record is on disk. */
  private readonly launched = new Map<string, number>();

  constructor(
    private readonly store: ScheduleStore,
    private readonly body: RunBody,
    private readonly opts: { clock?: Clock; log?: SchedulerLog; onRun?: (s: Schedule, r: RunRecord) => void; maxSleepMs?: number } = {},
  ) {}

  private get clock(): Clock { return this.opts.clock ?? systemClock; }
  private get log(): SchedulerLog | undefined { return this.opts.log; }

  /** Record runs a dead process left under way as interrupted (never run again: their slot is handled), then tick. */
  async start(): Promise<void> {
    for (const [key, r] of Object.entries(this.store.allRuns())) {
      if (!r.running || processAlive(r.running.pid)) continue;
      const [container, name] = key.split('/');
      const { running } = r;
      await this.store.updateRuns(container, name, ({ running: _gone, ...rest }) => ({
        ...rest, failures: rest.failures + 1,
        last: { outcome: 'failed', why: 'interrupted: the process running it ended', startedAt: running.startedAt, durationMs: 0, trigger: running.trigger },
      })).catch(() => undefined);
    }
    this.tick();
  }

  /** Stop the timer; resolves when the runs under way have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    await this.idle();
  }

  /** Resolves when no run is under way. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Launch what is owed now, and sleep until the next slot (at most MAX_SLEEP_MS). */
  tick(): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.timer);
    const now = this.clock.now();
    let wake = now + (this.opts.maxSleepMs ?? MAX_SLEEP_MS);
    let schedules: Schedule[] = [];
    try {
      schedules = this.store.list();
      for (const r of this.store.rejected) {
        if (this.warned.has(r.key)) continue;
        this.warned.add(r.key);
        this.log?.warn('backup schedule skipped', { schedule: r.key, error: r.why });
      }
    } catch (err) {
      this.log?.warn('backup schedules unreadable', { error: (err as Error).message });
    }
    const runs = this.store.allRuns();
    for (const s of schedules) {
      const key = `${s.container}/${s.name}`;
      const recorded = runs[key]?.lastSlot ? Date.parse(runs[key].lastSlot!) : undefined;
      const mine = this.launched.get(key);
      const lastSlot = mine !== undefined && (recorded === undefined || mine > recorded) ? mine : recorded;
      let due;
      try {
        due = dueAt(s.cron, s.timeZone, lastSlot, Date.parse(s.createdAt), now);
      } catch (err) {
        this.log?.warn('backup schedule skipped', { schedule: key, error: (err as Error).message });
        continue;
      }
      if (due.slot !== undefined) this.launch(s, key, due.slot, due.catchUp ? 'catch-up' : 'timer');
      if (due.next !== undefined) wake = Math.min(wake, due.next);
    }
    this.timer = this.clock.setTimeout(() => this.tick(), Math.max(wake - now, 0) + 5);
  }

  private launch(s: Schedule, key: string, slot: number, trigger: RunRecord['trigger']): void {
    this.launched.set(key, slot);
    this.log?.info('backup run', { schedule: key, slot: new Date(slot).toISOString(), trigger });
    const p = executeRun(this.store, s, trigger, this.body, { slot, clock: this.clock }).then(
      (r) => {
        if (r.outcome !== 'ok') this.log?.warn(`backup run ${r.outcome}`, { schedule: key, why: r.why });
        this.opts.onRun?.(s, r);
      },
      (err: Error) => this.log?.warn('backup run not recorded', { schedule: key, error: err.message }),
    ).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }
}
