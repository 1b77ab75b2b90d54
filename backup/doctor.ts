import type { Root } from '../lib/root';
import { SnapshotCatalog } from '../storage';
import { parseCron, ScheduleStore } from './schedules';

export interface ScheduleCheck { name: string; ok: boolean; detail: string }

/**
 * `tsvz doctor`'s line per schedule: not ok when its newest snapshot (or,
 * with none yet, the schedule itself) is older than two of its periods:
 * the daemon is not running it, or its runs fail.
 */
export function scheduleChecks(root: Root, now = Date.now()): ScheduleCheck[] {
  const store = new ScheduleStore(root);
  return store.list().map((s) => {
    const name = `backup ${s.container}/${s.name}`;
    const cron = parseCron(s.cron, s.timeZone);
    const a = cron.nextRun(new Date(now));
    const b = a ? cron.nextRun(a) : null;
    if (!a || !b) return { name, ok: true, detail: 'no further runs' };
    const period = b.getTime() - a.getTime();
    const mine = new SnapshotCatalog(root.containerDir(s.container)).list().filter((x) => x.schedule === s.name && !x.missingSince);
    const newest = mine.length > 0 ? Math.max(...mine.map((x) => Date.parse(x.createdAt))) : undefined;
    const since = newest ?? Date.parse(s.createdAt);
    const runs = store.runs(s.container, s.name);
    const last = runs.last ? `; last run ${runs.last.outcome}${runs.last.why ? ` (${runs.last.why})` : ''}` : '';
    const age = `${human(now - since)} old`;
    if (now - since > 2 * period) {
      return { name, ok: false, detail: `${newest === undefined ? 'no backup yet, schedule' : 'newest backup'} ${age}, over two periods (${human(period)})${last}` };
    }
    return { name, ok: true, detail: newest === undefined ? `no backup yet${last}` : `newest backup ${age}${last}` };
  });
}

function human(ms: number): string {
  const m = Math.round(ms / 60_000);
  if (m < 120) return `${m} min`;
  const h = Math.round(m / 60);
  return h < 48 ? `${h} h` : `${Math.round(h / 24)} d`;
}
