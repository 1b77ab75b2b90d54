import fs = require('node:fs');
import { Container } from '../runtime/container';
import { AlreadyExistsError, InvalidStateError, NotFoundError } from '../lib/errors';
import { RootfsStore, SnapshotCatalog, SnapshotRecord, StorageError, validateSnapshotName, withStore } from '../storage';
import { withUndo } from '../lib/undo';
import { consistently } from './consistent';
import { reconcile } from '../runtime/release';
import { writeState } from '../runtime/state';
import { compareText } from '../lib/compare';
import { lockContainer, withContainerIntent } from './recovery';
import type { Intent } from '../lib/intent';

/**
 * Snapshots of a container's rootfs: made by its pool's driver, recorded in
 * the container's snapshots.json (runtime/snapshot-catalog.ts). A running
 * container can be snapshotted: btrfs, zfs and lvm snapshots are atomic; a
 * dir pool copies, so the container is frozen around the copy.
 */

export interface SnapshotListing extends SnapshotRecord {
  /** 'missing': recorded, but the storage no longer holds it. */
  status: 'ok' | 'missing';
  /** Space only this snapshot holds, where the driver knows (zfs). */
  sizeBytes?: number;
  /** Data it refers to, where the driver knows (zfs). */
  referencedBytes?: number;
}

/** A default snapshot name: the time, sortable and valid as a name (e.g. 20261123-153000-123). */
export function newSnapshotName(now = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace('T', '-').replace('.', '-').replace('Z', '');
}

export async function createSnapshot(c: Container, name?: string, opts: { stateful?: boolean; schedule?: string } = {}): Promise<SnapshotRecord> {
  const snap = validateSnapshotName(name ?? newSnapshotName());
  return lockContainer(c, async () => {
    const state = await reconcile(c);
    const running = state.status === 'running';
    if (opts.stateful && !running) {
      throw new InvalidStateError(`container ${c.name} is not running`, 'a stateful snapshot saves memory too: start it, or take a plain snapshot');
    }
    const catalog = new SnapshotCatalog(c.paths.dir);
    if (catalog.find(snap)) {
      throw new AlreadyExistsError(`container ${c.name} already has a snapshot "${snap}"`, `pick another name, or remove it with \`tsvz snapshot rm ${c.name} ${snap}\``);
    }
    return withStore(c.root, c.config.pool, (store) => withUndo(async (undo) => {
      const createdAt = new Date().toISOString();
      const record: SnapshotRecord = { name: snap, createdAt, pool: store.pool, handle: store.snapshotHandle(c.name, snap), ...(opts.stateful ? { stateful: true } : {}), ...(opts.schedule ? { schedule: opts.schedule } : {}) };
      if (opts.stateful) {
        // Journalled: a tsvz killed before CRIU wrote every page leaves nothing; after, a recorded snapshot.
        await withContainerIntent(c, 'stateful-snapshot', { snapshot: snap, pool: record.pool, handle: record.handle, createdAt }, async (intent) => {
          await statefully(c, intent, async () => {
            await intent.will({ kind: 'delete-snapshot', snapshot: snap });
            await store.snapshot(c.name, snap);
            undo.add(`delete snapshot ${snap}`, () => store.deleteSnapshot(c.name, snap));
            const { dumpContainer } = await import('../checkpoint/dump');
            await dumpContainer(c, state, snapshotState(c), { name: snap, leaveRunning: true, intent });
            undo.add(`remove the memory of ${snap}`, () => snapshotState(c).remove(snap));
          });
          await catalog.add(record);
        });
        return record;
      }
      await consistently(c, store, running, () => store.snapshot(c.name, snap));
      undo.add(`delete snapshot ${snap}`, () => store.deleteSnapshot(c.name, snap));
      await catalog.add(record);
      return record;
    }));
  });
}

/**
 * Files and memory at one instant: the whole tree frozen while the storage
 * snapshots the rootfs and CRIU dumps the processes (leaving them running,
 * and frozen, since they were), then thawed, even on failure.
 */
async function statefully(c: Container, intent: Intent, body: () => Promise<void>): Promise<void> {
  const { criuFreezer, isFrozen, withFrozen } = await import('../runtime/cgroups/freezer');
  const cg = c.cgroups();
  if (isFrozen(cg)) return body(); // frozen by `tsvz freeze`: it stays so (the dump moves it to CRIU's freezer)
  await intent.will({ kind: 'thaw' });
  await withFrozen(criuFreezer(cg), body);
}

/** Where stateful snapshots keep their CRIU images: a checkpoint catalog of its own. */
function snapshotState(c: Container) {
  const { CheckpointCatalog } = require('../checkpoint/catalog') as typeof import('../checkpoint/catalog');
  return new CheckpointCatalog(c, 'snapshot-state');
}

/**
 * The snapshots, reconciled: the catalog against what the storage holds.
 * A recorded snapshot the storage lost (deleted behind our back) is listed
 * as missing (until `snapshot rm` drops it); one the storage has that was
 * never recorded is adopted into the catalog.
 */
/** Names tsvz gives the snapshots its operations take and remove (migrate/files.ts, backup/restore.ts). */
const TRANSIENT_SNAPSHOT = /^tsvz-(migrate|before-restore)-/;

export async function listSnapshots(c: Container): Promise<SnapshotListing[]> {
  return lockContainer(c, async () => withStore(c.root, c.config.pool, async (store) => {
    const catalog = new SnapshotCatalog(c.paths.dir);
    const recorded = catalog.list();
    const actual = new Map((await store.listSnapshots(c.name)).map((s) => [s.name, s]));
    const now = new Date().toISOString();
    const next: SnapshotRecord[] = [];
    const rows: SnapshotListing[] = [];
    for (const r of recorded) {
      const real = actual.get(r.name);
      if (real) {
        const { missingSince: _gone, ...rec } = r;
        next.push(rec);
        rows.push({ ...rec, status: 'ok', sizeBytes: real.sizeBytes, referencedBytes: real.referencedBytes });
      } else {
        const rec = { ...r, missingSince: r.missingSince ?? now };
        next.push(rec);
        rows.push({ ...rec, status: 'missing' });
      }
    }
    for (const s of actual.values()) {
      if (recorded.some((r) => r.name === s.name)) continue;
      // A migration's or a restore's own snapshot, there only while it runs: not the user's to adopt.
      if (TRANSIENT_SNAPSHOT.test(s.name)) continue;
      const rec: SnapshotRecord = { name: s.name, createdAt: s.createdAt ?? now, pool: store.pool, handle: store.snapshotHandle(c.name, s.name), adopted: true };
      next.push(rec);
      rows.push({ ...rec, status: 'ok', sizeBytes: s.sizeBytes, referencedBytes: s.referencedBytes });
    }
    if (JSON.stringify(next) !== JSON.stringify(recorded)) await catalog.save(next);
    return rows.sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.name, b.name));
  }));
}

/**
 * Remove a snapshot from the storage and the catalog. Refused while a
 * clone was made from it. One the storage already lost is just forgotten.
 */
export async function removeSnapshot(c: Container, snap: string): Promise<{ wasMissing: boolean }> {
  validateSnapshotName(snap);
  return lockContainer(c, async () => withStore(c.root, c.config.pool, async (store) => {
    const catalog = new SnapshotCatalog(c.paths.dir);
    const recorded = catalog.find(snap) !== undefined;
    const exists = await hasSnapshot(store, c.name, snap);
    if (!recorded && !exists) throw noSuchSnapshot(c, snap);
    if (catalog.find(snap)?.protected) {
      throw new InvalidStateError(`snapshot ${snap} of ${c.name} is protected`, `\`tsvz snapshot unprotect ${c.name} ${snap}\` first`);
    }
    const { clonesOf } = await import('./clone');
    const clones = clonesOf(c.root, c.name, snap);
    if (clones.length > 0) {
      const which = clones.length === 1 ? `clone ${clones[0]}` : `clones ${clones.join(', ')}`;
      throw new StorageError(`snapshot ${snap} of ${c.name} is the origin of ${which}`, {
        code: 'EDEPENDENT',
        hint: `destroy ${clones.length === 1 ? 'that clone' : 'those clones'} first`,
      });
    }
    if (exists) await store.deleteSnapshot(c.name, snap);
    if (catalog.find(snap)?.stateful) fs.rmSync(snapshotState(c).dir(snap), { recursive: true, force: true });
    if (recorded) await catalog.remove(snap);
    return { wasMissing: !exists };
  }));
}

/**
 * Make the rootfs the snapshot's again. The container must not be running;
 * with `force` a running one is stopped, rolled back and started again (and
 * started again on its old content if the rollback fails).
 */
export async function rollbackSnapshot(c: Container, snap: string, opts: { force?: boolean } = {}): Promise<{ restarted: boolean }> {
  validateSnapshotName(snap);
  // Checked before anything is stopped: a typo must not cost a restart.
  const wasRunning = await lockContainer(c, async () => {
    const running = (await reconcile(c)).status === 'running';
    await withStore(c.root, c.config.pool, async (store) => {
      const names = (await store.listSnapshots(c.name)).map((s) => s.name);
      if (!names.includes(snap)) throw noSuchSnapshot(c, snap);
      const newer = names.slice(names.indexOf(snap) + 1);
      if (!store.capabilities.rollbackToAny && newer.length > 0) {
        throw new StorageError(`cannot roll back ${c.name} to ${snap}: ${store.driver} pools roll back to the newest snapshot only, and ${c.name} has newer ones (${newer.join(', ')})`, {
          code: 'EDEPENDENT',
          hint: 'remove those first',
        });
      }
    });
    if (new SnapshotCatalog(c.paths.dir).find(snap)?.stateful) snapshotState(c).get(snap); // its memory must be there too
    if (running && !opts.force) {
      throw new InvalidStateError(`container ${c.name} is running`, 'stop it first, or use --force to stop it, roll back and start it again');
    }
    return running;
  });
  if (wasRunning) await (await import('./stop')).stopContainer(c);
  const stateful = new SnapshotCatalog(c.paths.dir).find(snap)?.stateful === true;
  let failure: unknown;
  let rolledBack = false;
  try {
    await lockContainer(c, async () => {
      const current = await reconcile(c);
      if (current.status === 'running' || current.status === 'starting') throw new InvalidStateError(`container ${c.name} was started again meanwhile`, 'stop it and retry');
      await withStore(c.root, c.config.pool, async (store) => {
        if (!(await hasSnapshot(store, c.name, snap))) throw noSuchSnapshot(c, snap);
        // Retired before the files change, given back if they don't: a tsvz killed half-way
        // leaves no checkpoint that could restore processes over other files than theirs.
        const retired = await forgetCheckpointsOf(c, snap);
        try {
          await store.rollback(c.name, snap);
        } catch (err) {
          await retired.giveBack();
          throw err;
        }
      });
      rolledBack = true;
      if (stateful) {
        // The memory of that instant, over the files of that instant: it comes back running.
        const { restoreFrom } = await import('../checkpoint/restore');
        const state = snapshotState(c);
        const current = await reconcile(c);
        await withContainerIntent(c, 'restore', { snapshot: snap }, (intent) => restoreFrom(c, current, state, state.get(snap), { intent }));
      }
    });
  } catch (err) {
    if (rolledBack) throw err; // files rolled back, memory not: stopped, and the error says why
    failure = err;
  }
  if (stateful) return { restarted: true };
  if (wasRunning) {
    try {
      await (await import('./start')).startContainer(c);
    } catch (err) {
      const why = (err as Error).message;
      if (failure instanceof Error) failure.message += ` (starting ${c.name} again failed too: ${why})`;
      else throw new InvalidStateError(`rolled ${c.name} back to ${snap}, but starting it again failed: ${why}`, `\`tsvz start ${c.name}\``);
    }
  }
  if (failure) throw failure;
  return { restarted: wasRunning };
}

async function hasSnapshot(store: RootfsStore, name: string, snap: string): Promise<boolean> {
  return (await store.listSnapshots(name)).some((s) => s.name === snap);
}

function noSuchSnapshot(c: Container, snap: string): NotFoundError {
  return new NotFoundError(`container ${c.name} has no snapshot "${snap}"`, `see \`tsvz snapshot list ${c.name}\``);
}

/**
 * The files went back to `snap` (or a backup `snap` came in over them):
 * every checkpoint was dumped against other files, so none may be restored
 * over these (each is marked, and kept for the user to remove); a
 * container stopped at one is now just stopped.
 */
export async function forgetCheckpointsOf(c: Container, snap: string): Promise<{ giveBack(): Promise<void> }> {
  const { CheckpointCatalog } = require('../checkpoint/catalog') as typeof import('../checkpoint/catalog');
  const catalog = new CheckpointCatalog(c);
  const marked = await catalog.markFilesRolledBack(snap);
  const state = c.recordedState();
  if (state.status === 'stopped' && state.checkpoint) {
    const { checkpoint: _forgotten, ...rest } = state;
    await writeState(c.paths, rest);
  }
  return {
    giveBack: async () => {
      await catalog.unmarkFilesRolledBack(marked);
      await writeState(c.paths, state);
    },
  };
}
