import { InvalidArgumentError } from '../lib/errors';
import { parseSize } from '../lib/units';
import type { Root } from '../lib/root';
import { Container } from '../runtime/container';
import { formatKeepPolicy, parseKeepPolicy } from './retention';
import { executeRun } from './scheduler';
import { hostTimeZone, RunRecord, Schedule, ScheduleRuns, ScheduleStore, validateSchedule } from './schedules';
import { dueAt } from './timing';

/** What the CLI's schedule commands do: checked input in, plain records out. */

export interface ScheduleRow extends Schedule, Omit<ScheduleRuns, 'last'> {
  keepText: string;
  nextRun?: string;
  /** A slot is owed and has not run (no daemon, or it is behind): since when, in ms. */
  lagMs?: number;
  last?: RunRecord;
}

export function listSchedules(root: Root, now = Date.now(), rejected?: { key: string; why: string }[]): ScheduleRow[] {
  const store = new ScheduleStore(root);
  const runs = store.allRuns();
  const valid = store.list();
  rejected?.push(...store.rejected);
  return valid.map((s) => {
    const r = runs[`${s.container}/${s.name}`] ?? { failures: 0 };
    const due = dueAt(s.cron, s.timeZone, r.lastSlot ? Date.parse(r.lastSlot) : undefined, Date.parse(s.createdAt), now);
    const next = due.slot !== undefined ? now : due.next;
    return {
      ...s, ...r, keepText: formatKeepPolicy(s.keep),
      ...(next !== undefined ? { nextRun: new Date(next).toISOString() } : {}),
      ...(due.slot !== undefined ? { lagMs: now - due.slot } : {}),
    };
  });
}

export interface AddRequest {
  container: string; name: string; cron: string; keep?: string; mode?: string; stateful?: boolean; timeZone?: string; to?: string;
  /** "10M": bytes a second. */
  bwlimit?: string;
}

/** Add a schedule: the container and the remote must exist, the cron and the keep rules parse. */
export async function addSchedule(root: Root, req: AddRequest): Promise<ScheduleRow> {
  const s = validateSchedule({
    container: req.container, name: req.name, cron: req.cron, timeZone: req.timeZone ?? hostTimeZone(),
    keep: req.keep === undefined ? {} : parseKeepPolicy(req.keep), mode: req.mode as Schedule['mode'], stateful: req.stateful, to: req.to,
    ...(req.bwlimit !== undefined ? { bandwidth: parseSize(req.bwlimit, '--bwlimit') } : {}),
  });
  if (s.bandwidth !== undefined && !s.to) throw new InvalidArgumentError('--bwlimit limits shipping: give --to too');
  Container.open(root, s.container); // "no such container"
  if (s.to) {
    const { RemoteStore } = await import('../daemon/remotes');
    new RemoteStore(root).get(s.to); // "no remote X"
  }
  if (s.stateful && s.mode !== 'snapshot') throw new InvalidArgumentError('--stateful takes its own consistent instant: use it with --mode snapshot');
  await new ScheduleStore(root).add(s);
  return listSchedules(root).find((x) => x.container === s.container && x.name === s.name)!;
}

/** `schedule run`: executeRun with the real body, as the daemon's timer does. */
export async function runScheduleNow(root: Root, container: string, name: string): Promise<RunRecord> {
  const store = new ScheduleStore(root);
  const s = store.get(container, name);
  const { backupBody } = await import('./run');
  return executeRun(store, s, 'manual', backupBody(root));
}
