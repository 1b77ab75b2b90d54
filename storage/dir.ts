import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { writeJsonAtomic, readJsonIfExists } from '../lib/atomic-file';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { exchangePaths } from '../lib/libc-fs';
import { findCommand } from '../lib/process';
import { withUndo } from '../lib/undo';
import { copyTree } from './copy-tree';
import { ContainersLayout, DirLayout, PoolLayout } from './dir-layout';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, storageFailure } from './errors';
import { openForDestroy, requireNoSnapshot, requireNoVolume, requireSnapshot, requireVolume, volumeExists } from './presence';
import { checkReceive, checkSendOptions, receiveTar } from './transfer';
import { byCreation, createdAt, filesystemUsage, isDirectory, isStaleStaging, isTrash, removeTree, stagingPath } from './tree';
import { checkSourceDir, claimPoolDir, requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from './validate';
import { faultPause } from '../lib/fault';

/**
 * The dir driver: volumes are plain directories, snapshots are copies
 * (`cp -a --reflink=auto`, so they share extents on btrfs/xfs), rollback
 * swaps a fresh copy in with one renameat2(RENAME_EXCHANGE). Where the trees
 * are is the layout's (dir-layout.ts): a created pool's directory, or, for
 * the built-in pool "default", each container's own directory.
 *
 * Every copy is made under a hidden staging name and renamed into place, so
 * a failed or interrupted copy (e.g. the disk filled up) is never visible;
 * removed trees are renamed aside first, so a failure half-way leaves only
 * hidden trash, which the next sweep removes.
 */

export interface DirPoolRecord extends PoolRecord {
  driver: 'dir';
  /** The pool's directory: <rootDir>/pools/<name>, the --source directory, or (the default pool) ROOT/containers. */
  path: string;
  /** <rootDir>/pools/<name>, which every created pool owns (it holds the name). */
  dir?: string;
  /** True when `path` was given with --source (destroy empties it but leaves it). */
  external?: boolean;
  /** 'containers': the default pool's layout, in the containers' directories. */
  layout?: 'containers';
}

class DirDriver implements StorageDriver {
  readonly name = 'dir';
  readonly capabilities: DriverCapabilities = { atomicSnapshot: false, cowClone: false, incrementalSend: false, rollbackToAny: true, sendFormats: ['tar'] };

  async missing(): Promise<string[]> {
    return findCommand('cp') ? [] : ['cp (coreutils) not installed'];
  }

  async createPool(spec: PoolSpec): Promise<DirPoolRecord> {
    validatePoolSpec(spec, 0);
    await requireUsable(this);
    if (spec.size !== undefined) throw new InvalidArgumentError('a dir pool has no size: it uses the space of the filesystem it is on', 'drop --size');
    const external = spec.source !== undefined;
    const root = external ? checkSourceDir(spec.source!, 'dir') : undefined;
    const dir = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      const top = root ?? dir;
      for (const sub of PoolLayout.DIRS) {
        fs.mkdirSync(path.join(top, sub), { mode: 0o711 });
        undo.add(`remove ${sub}`, () => fs.rmSync(path.join(top, sub), { recursive: true, force: true }));
      }
      return { name: spec.name, driver: 'dir', path: top, dir, external };
    });
  }

  async openPool(record: PoolRecord): Promise<DirPool> {
    const rec = record as DirPoolRecord;
    if (rec.layout === 'containers') return this.openOn(rec, new ContainersLayout(rec.path));
    if (!isDirectory(path.join(rec.path, 'volumes'))) {
      throw new NotFoundError(`pool ${rec.name}: ${rec.path} is missing or is not a dir pool`, 'was the directory moved or its filesystem not mounted?');
    }
    return this.openOn(rec, new PoolLayout(rec.path));
  }

  /** The pool on a given layout (the default pool's while a container is built elsewhere: default-pool.ts). */
  async openOn(rec: DirPoolRecord, layout: DirLayout): Promise<DirPool> {
    const pool = new DirPool(rec, this, layout);
    await pool.sweep();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as DirPoolRecord;
    if (rec.layout === 'containers' || rec.dir === undefined) throw new InvalidArgumentError(`pool ${rec.name} cannot be removed`, 'it is built in');
    await openForDestroy(this, rec, opts.force);
    if (rec.external) for (const sub of PoolLayout.DIRS) await removeTree(path.join(rec.path, sub));
    await removeTree(rec.dir);
  }

  /** The layout made in a --source, where still empty (a half-made pool holds nothing). */
  async abandon(spec: PoolSpec): Promise<void> {
    if (spec.source === undefined) return;
    for (const sub of PoolLayout.DIRS) await fs.promises.rmdir(path.join(path.resolve(spec.source), sub)).catch(() => undefined);
  }

  describeSource(record: PoolRecord): string {
    return String((record as DirPoolRecord).path);
  }
}

class DirPool implements Pool {
  constructor(readonly record: DirPoolRecord, readonly driver: DirDriver, private readonly layout: DirLayout) {}

  private snapshotPath(vol: string, snap: string): string {
    return path.join(this.layout.snapshotsDir(validateVolumeName(vol)), validateSnapshotName(snap));
  }

  volumePath(vol: string): string {
    return this.layout.volumePath(validateVolumeName(vol));
  }

  snapshotHandle(vol: string, snap: string): string {
    return this.snapshotPath(vol, snap);
  }

  async hasVolume(vol: string): Promise<boolean> {
    return isDirectory(this.volumePath(vol));
  }

  async hasSnapshot(vol: string, snap: string): Promise<boolean> {
    return isDirectory(this.snapshotPath(vol, snap));
  }

  async listVolumes(): Promise<string[]> {
    return this.layout.candidates().filter((v) => isValidName(v) && isDirectory(this.layout.volumePath(v)));
  }

  async createVolume(vol: string): Promise<string> {
    const dir = this.volumePath(vol);
    this.layout.prepare(vol);
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw volumeExists(this, vol);
      this.layout.release(vol);
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    return dir;
  }

  async deleteVolume(vol: string): Promise<void> {
    await requireVolume(this, vol);
    // Out of sight first (one rename each), then removed: a failure half-way leaves only trash.
    const trashed = [this.toTrash(vol, this.volumePath(vol))];
    if (fs.existsSync(this.layout.snapshotsDir(vol))) trashed.push(this.toTrash(vol, this.layout.snapshotsDir(vol)));
    fs.rmSync(this.layout.originFile(vol), { force: true });
    for (const p of trashed) await removeQuietly(p);
    this.layout.release(vol);
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    await requireVolume(this, vol);
    await requireNoSnapshot(this, vol, snap);
    const src = this.volumePath(vol);
    const dst = this.snapshotPath(vol, snap);
    await this.sweep(vol);
    try {
      await withUndo(async (undo) => {
        fs.mkdirSync(this.layout.snapshotsDir(vol), { recursive: true, mode: 0o711 });
        const tmp = stagingPath(this.layout.snapshotsDir(vol), `new-${snap}`);
        undo.add(`remove ${tmp}`, () => removeTree(tmp));
        await copyTree(src, tmp);
        fs.renameSync(tmp, dst);
      });
    } catch (err) {
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    return this.info(vol, snap);
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    await requireVolume(this, vol);
    const dir = this.layout.snapshotsDir(vol);
    const snaps = visibleDirs(dir);
    return byCreation(snaps, (snap) => path.join(dir, snap)).map((snap) => this.info(vol, snap));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const clones = await this.clonesOf(vol, snap);
    if (clones.length > 0) throw dependentClones(vol, snap, clones);
    await removeQuietly(this.toTrash(vol, this.snapshotPath(vol, snap)));
  }

  async rollback(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const src = this.snapshotPath(vol, snap);
    const dir = this.volumePath(vol);
    await this.sweep(vol);
    let old: string;
    try {
      old = await withUndo(async (undo) => {
        const tmp = stagingPath(path.dirname(dir), `rollback-${vol}`);
        undo.add(`remove ${tmp}`, () => removeTree(tmp));
        await copyTree(src, tmp);
        await faultPause('rollback:copied');
        // The one step that changes what the volume path shows: old tree out, copy in, atomically.
        exchangePaths(tmp, dir);
        return tmp;
      });
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
    await removeQuietly(this.toTrash(vol, old));
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    if (snap === undefined) await requireVolume(this, src);
    else await requireSnapshot(this, src, snap);
    const from = snap === undefined ? this.volumePath(src) : this.snapshotPath(src, snap);
    const target = this.volumePath(dst);
    await requireNoVolume(this, dst);
    try {
      this.layout.prepare(dst);
      await this.sweep(dst);
      await withUndo(async (undo) => {
        const tmp = stagingPath(path.dirname(target), `clone-${dst}`);
        undo.add(`remove ${tmp}`, () => removeTree(tmp));
        await copyTree(from, tmp);
        if (snap !== undefined) {
          await writeJsonAtomic(this.layout.originFile(dst), { volume: src, snapshot: snap });
          undo.add('remove origin record', () => fs.rmSync(this.layout.originFile(dst), { force: true }));
        }
        fs.renameSync(tmp, target);
      });
    } catch (err) {
      this.layout.release(dst);
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return target;
  }

  async send(vol: string, snap: string, opts: SendOptions): Promise<Readable> {
    checkSendOptions(this.driver, opts);
    await requireSnapshot(this, vol, snap);
    // Loaded here: the tar modules are for transfers, not for every command on the default pool.
    const { packTree } = require('../archive/tree-tar') as typeof import('../archive/tree-tar');
    return packTree(this.snapshotPath(vol, snap));
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    checkReceive(this.driver, vol, snap, opts);
    await receiveTar(this, vol, snap, input);
  }

  async usage(): Promise<PoolUsage> {
    return filesystemUsage(this.layout.top);
  }

  /** Left-overs of killed operations (staging copies whose process is gone) and trash: removed. */
  async sweep(vol?: string): Promise<void> {
    for (const dir of this.layout.stagingDirs(vol)) {
      let entries: string[];
      try { entries = fs.readdirSync(dir); } catch { continue; }
      for (const e of entries.filter((n) => isTrash(n) || isStaleStaging(n))) await removeQuietly(path.join(dir, e));
    }
  }

  private toTrash(vol: string, p: string): string {
    const trashed = stagingPath(this.layout.trashDir(vol), `rm-${path.basename(p)}`);
    fs.renameSync(p, trashed);
    return trashed;
  }

  /** Volumes cloned from vol@snap that still exist. */
  private async clonesOf(vol: string, snap: string): Promise<string[]> {
    const clones: string[] = [];
    for (const clone of await this.listVolumes()) {
      const origin = readJsonIfExists<{ volume: string; snapshot: string }>(this.layout.originFile(clone));
      if (origin?.volume === vol && origin.snapshot === snap) clones.push(clone);
    }
    return clones;
  }

  private info(vol: string, snap: string): SnapshotInfo {
    return { name: snap, createdAt: createdAt(this.snapshotPath(vol, snap)) };
  }
}

/** Remove what was moved out of sight; whatever fails stays for the next sweep. */
async function removeQuietly(p: string): Promise<void> {
  try {
    await removeTree(p);
  } catch { /* retried by the next sweep */ }
}

function visibleDirs(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
}

function isValidName(name: string): boolean {
  try {
    validateVolumeName(name);
    return true;
  } catch {
    return false;
  }
}

export const dirDriver = new DirDriver();
