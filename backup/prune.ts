import type { Container } from '../runtime/container';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { SnapshotCatalog, validateSnapshotName } from '../storage';
import { lockContainer } from '../ops/recovery';
import { applyRetention, KeepPolicy, RetentionDecision } from './retention';
import type { Schedule } from './schedules';
import { ShipState } from './ship-state';

/**
 * Pruning a container's snapshots by a retention policy. A schedule's
 * policy covers only the snapshots that schedule made; an explicit policy
 * (`tsvz prune p1 --keep ...`) covers them all. Besides the policy's own
 * rules, these are kept whatever it says: the newest, the origin of a
 * clone, the base a target needs for its next incremental send, and one
 * being sent now.
 */

export interface PruneRow extends RetentionDecision {
  schedule?: string;
  /** Removal failed (the snapshot stays): why. */
  error?: string;
}

export interface PruneTarget {
  /** Only the snapshots of this schedule (undefined: all of the container's). */
  schedule?: string;
  keep: KeepPolicy;
  timeZone?: string;
}

export async function pruneSnapshots(c: Container, targets: PruneTarget[], opts: { dryRun?: boolean } = {}): Promise<PruneRow[]> {
  const { listSnapshots, removeSnapshot } = await import('../ops/snapshot');
  const { clonesOf } = await import('../ops/clone');
  const all = (await listSnapshots(c)).filter((s) => s.status === 'ok');
  const holds = new Map<string, string>();
  for (const s of all) {
    const clones = clonesOf(c.root, c.name, s.name);
    if (clones.length > 0) holds.set(s.name, `origin of ${clones.join(', ')}`);
  }
  for (const [snap, why] of new ShipState(c.root).holdsFor(c.name)) holds.set(snap, why);
  const rows: PruneRow[] = [];
  for (const t of targets) {
    const mine = all.filter((s) => t.schedule === undefined || s.schedule === t.schedule);
    for (const d of applyRetention(mine, t.keep, { timeZone: t.timeZone, holds })) {
      const schedule = mine.find((s) => s.name === d.name)?.schedule;
      rows.push({ ...d, ...(schedule ? { schedule } : {}) });
    }
  }
  if (opts.dryRun) return rows;
  for (const r of rows) {
    if (r.action !== 'remove') continue;
    try {
      await removeSnapshot(c, r.name);
    } catch (err) {
      r.error = (err as Error).message; // reported; the rest still goes
    }
  }
  return rows;
}

/** The targets `tsvz prune` uses: an explicit policy, or each of the container's schedules. */
export function pruneTargets(schedules: Schedule[], container: string, explicit?: KeepPolicy, only?: string): PruneTarget[] {
  const mine = schedules.filter((s) => s.container === container && (only === undefined || s.name === only));
  if (only !== undefined && mine.length === 0) throw new NotFoundError(`container ${container} has no schedule "${only}"`, 'see `tsvz schedule list`');
  if (explicit) return [{ keep: explicit, schedule: only, timeZone: mine[0]?.timeZone }];
  if (mine.length === 0) throw new InvalidArgumentError(`container ${container} has no backup schedule, so no retention policy`, 'give one with --keep last=3,daily=7,...');
  return mine.map((s) => ({ schedule: s.name, keep: s.keep, timeZone: s.timeZone }));
}

/** Protect (or unprotect) a snapshot: retention and `snapshot rm` leave a protected one alone. */
export async function setProtected(c: Container, snap: string, on: boolean): Promise<boolean> {
  validateSnapshotName(snap);
  const { listSnapshots } = await import('../ops/snapshot');
  await listSnapshots(c); // adopts one made by hand, so it can be protected too
  return lockContainer(c, async () => {
    const catalog = new SnapshotCatalog(c.paths.dir);
    const rec = catalog.find(snap);
    if (!rec) throw new NotFoundError(`container ${c.name} has no snapshot "${snap}"`, `see \`tsvz snapshot list ${c.name}\``);
    const was = rec.protected === true;
    if (was === on) return false;
    const { protected: _was, ...rest } = rec;
    await catalog.add(on ? { ...rest, protected: true } : rest);
    return true;
  });
}
