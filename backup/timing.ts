import { parseCron } from './schedules';

/**
 * When a schedule is owed a run. Pure: the caller gives the time. The slots
 * are croner's, in the schedule's zone: a wall time that does not happen
 * (spring DST) moves to the next valid one, one that happens twice (autumn)
 * fires once. Every slot handled is recorded (lastSlot), so:
 *
 * - slots missed while the daemon was down, the host asleep or the clock
 *   jumped forward give one catch-up run (the newest missed slot), never a
 *   burst;
 * - the clock going back before lastSlot owes nothing until it passes the
 *   first slot after lastSlot: no slot runs twice.
 */
export interface Due {
  /** The slot to run now (epoch ms), if one is owed. */
  slot?: number;
  /** More than one slot was missed: this run catches up. */
  catchUp: boolean;
  /** The next slot after `now` that is not yet handled (epoch ms), or undefined when the expression never fires again. */
  next?: number;
}

/** Scanning further than this many missed slots stops: the newest found is the catch-up. */
const MAX_SCAN = 100_000;

export function dueAt(cron: string, timeZone: string, lastSlot: number | undefined, createdAt: number, now: number): Due {
  const c = parseCron(cron, timeZone);
  const base = lastSlot ?? createdAt;
  let slot: number | undefined;
  let missed = 0;
  let t = c.nextRun(new Date(base))?.getTime();
  while (t !== undefined && t <= now && missed < MAX_SCAN) {
    slot = t;
    missed++;
    t = c.nextRun(new Date(t))?.getTime();
  }
  // The first slot after the newest handled one: croner asked from `now` could step over
  // the second of an autumn hour that happens twice.
  const next = missed < MAX_SCAN ? t : c.nextRun(new Date(now))?.getTime();
  return { ...(slot !== undefined ? { slot } : {}), catchUp: missed > 1, ...(next !== undefined ? { next } : {}) };
}
