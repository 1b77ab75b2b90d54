import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { writeJsonAtomic, readJsonIfExists } from '../lib/atomic-file';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { findCommand } from '../lib/process';
import { withUndo } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, StorageError, storageFailure } from './errors';
import { exchangePaths } from '../lib/libc-fs';
import { packTree } from '../archive/tree-tar';
import { checkReceive, checkSendOptions, receiveTar } from './transfer';
import { copyTree } from './copy-tree';
import { byCreation, createdAt, filesystemUsage, isDirectory, isStaleStaging, removeTree, stagingPath, visibleEntries } from './tree';
import { checkSourceDir, claimPoolDir, requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from './validate';

/**
 * The dir driver: volumes are plain directories, snapshots are copies
 * (`cp -a --reflink=auto`, so they share extents on btrfs/xfs), rollback
 * swaps a fresh copy in with one renameat2(RENAME_EXCHANGE).
 *
 *   <pool>/volumes/<vol>            the rootfs
 *   <pool>/snapshots/<vol>/<snap>   copies
 *   <pool>/origins/<clone>.json     {volume, snapshot} a clone was made from
 *   <pool>/.trash/                  trees being removed (finished on next open)
 *
 * Every copy is made under a hidden staging name and renamed into place, so
 * a failed or interrupted copy (e.g. the disk filled up) is never visible.
 */

export interface DirPoolRecord extends PoolRecord {
  driver: 'dir';
  /** The pool's directory: <rootDir>/pools/<name>, or the --source directory. */
  path: string;
  /** <rootDir>/pools/<name>, which every pool owns (it holds the name). */
  dir: string;
  /** True when `path` was given with --source (destroy empties it but leaves it). */
  external: boolean;
}

const LAYOUT = ['volumes', 'snapshots', 'origins', '.trash'];

class DirDriver implements StorageDriver {
  readonly name = 'dir';
  readonly capabilities: DriverCapabilities = { atomicSnapshot: false, cowClone: false, incrementalSend: false, rollbackToAny: true, sendFormats: ['tar'] };

  missing(): string[] {
    return findCommand('cp') ? [] : ['cp (coreutils) not installed'];
  }

  async createPool(spec: PoolSpec): Promise<DirPoolRecord> {
    validatePoolSpec(spec, 0);
    requireUsable(this);
    if (spec.size !== undefined) throw new InvalidArgumentError('a dir pool has no size: it uses the space of the filesystem it is on', 'drop --size');
    const external = spec.source !== undefined;
    const root = external ? checkSourceDir(spec.source!, 'dir') : undefined;
    const dir = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      const top = root ?? dir;
      for (const sub of LAYOUT) {
        fs.mkdirSync(path.join(top, sub), { mode: 0o711 });
        undo.add(`remove ${sub}`, () => fs.rmSync(path.join(top, sub), { recursive: true, force: true }));
      }
      return { name: spec.name, driver: 'dir', path: top, dir, external };
    });
  }

  async openPool(record: PoolRecord): Promise<DirPool> {
    const rec = record as DirPoolRecord;
    if (!isDirectory(path.join(rec.path, 'volumes'))) {
      throw new NotFoundError(`pool ${rec.name}: ${rec.path} is missing or is not a dir pool`, 'was the directory moved or its filesystem not mounted?');
    }
    const pool = new DirPool(rec, this);
    pool.sweepStaging();
    pool.emptyTrash();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const pool = await this.openPool(record);
    const vols = await pool.listVolumes();
    if (vols.length > 0 && !opts.force) {
      throw new StorageError(`pool ${record.name} still has volumes: ${vols.join(', ')}`, { code: 'ENOTEMPTY', hint: 'delete them first, or force' });
    }
    const rec = pool.record;
    if (rec.external) for (const sub of LAYOUT) removeTree(path.join(rec.path, sub));
    removeTree(rec.dir);
  }
}

class DirPool implements Pool {
  constructor(readonly record: DirPoolRecord, readonly driver: DirDriver) {}

  private get root(): string { return this.record.path; }
  private snapshotsDir(vol: string): string { return path.join(this.root, 'snapshots', vol); }
  private snapshotPath(vol: string, snap: string): string { return path.join(this.snapshotsDir(vol), snap); }
  private originFile(vol: string): string { return path.join(this.root, 'origins', `${vol}.json`); }

  volumePath(vol: string): string {
    return path.join(this.root, 'volumes', validateVolumeName(vol));
  }

  async listVolumes(): Promise<string[]> {
    return visibleEntries(path.join(this.root, 'volumes'));
  }

  async createVolume(vol: string): Promise<string> {
    const dir = this.volumePath(vol);
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`volume ${vol} already exists in pool ${this.record.name}`);
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    return dir;
  }

  async deleteVolume(vol: string): Promise<void> {
    const dir = this.existingVolume(vol);
    // Out of sight first (one rename each), then removed: a failure half-way leaves only trash.
    this.toTrash(dir);
    if (fs.existsSync(this.snapshotsDir(vol))) this.toTrash(this.snapshotsDir(vol));
    fs.rmSync(this.originFile(vol), { force: true });
    this.emptyTrash();
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    const src = this.existingVolume(vol);
    const dst = this.snapshotPath(vol, validateSnapshotName(snap));
    if (fs.existsSync(dst)) throw new AlreadyExistsError(`snapshot ${vol}@${snap} already exists`);
    try {
      await withUndo(async (undo) => {
        fs.mkdirSync(this.snapshotsDir(vol), { recursive: true, mode: 0o711 });
        const tmp = stagingPath(this.snapshotsDir(vol), `new-${snap}`);
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
    this.existingVolume(vol);
    return byCreation(visibleEntries(this.snapshotsDir(vol)), (snap) => this.snapshotPath(vol, snap)).map((snap) => this.info(vol, snap));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    const dir = this.existingSnapshot(vol, snap);
    const clones = this.clonesOf(vol, snap);
    if (clones.length > 0) throw dependentClones(vol, snap, clones);
    this.toTrash(dir);
    this.emptyTrash();
  }

  async rollback(vol: string, snap: string): Promise<void> {
    const src = this.existingSnapshot(vol, snap);
    const dir = this.existingVolume(vol);
    let old: string;
    try {
      old = await withUndo(async (undo) => {
        const tmp = stagingPath(path.dirname(dir), `rollback-${vol}`);
        undo.add(`remove ${tmp}`, () => removeTree(tmp));
        await copyTree(src, tmp);
        // The one step that changes what the volume path shows: old tree out, copy in, atomically.
        exchangePaths(tmp, dir);
        return tmp;
      });
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
    this.toTrash(old);
    this.emptyTrash();
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    const from = snap === undefined ? this.existingVolume(src) : this.existingSnapshot(src, snap);
    const target = this.volumePath(dst);
    if (fs.existsSync(target)) throw new AlreadyExistsError(`volume ${dst} already exists in pool ${this.record.name}`);
    try {
      await withUndo(async (undo) => {
        const tmp = stagingPath(path.dirname(target), `clone-${dst}`);
        undo.add(`remove ${tmp}`, () => removeTree(tmp));
        await copyTree(from, tmp);
        if (snap !== undefined) {
          writeJsonAtomic(this.originFile(dst), { volume: src, snapshot: snap });
          undo.add('remove origin record', () => fs.rmSync(this.originFile(dst), { force: true }));
        }
        fs.renameSync(tmp, target);
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return target;
  }

  send(vol: string, snap: string, opts: SendOptions): Readable {
    checkSendOptions(this.driver, opts);
    return packTree(this.existingSnapshot(vol, snap));
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    checkReceive(this.driver, vol, snap, opts);
    await receiveTar(this, vol, snap, input);
  }

  async usage(): Promise<PoolUsage> {
    return filesystemUsage(this.root);
  }

  /** Half-made copies of operations whose process was killed mid-way go to the trash. */
  sweepStaging(): void {
    const dirs = [path.join(this.root, 'volumes'), ...visibleEntries(path.join(this.root, 'snapshots')).map((v) => this.snapshotsDir(v))];
    for (const dir of dirs) for (const e of fs.readdirSync(dir).filter(isStaleStaging)) this.toTrash(path.join(dir, e));
  }

  /** Finish removing what earlier deletes moved aside; whatever fails stays for the next try. */
  emptyTrash(): void {
    const trash = path.join(this.root, '.trash');
    for (const e of fs.readdirSync(trash)) {
      try {
        removeTree(path.join(trash, e));
      } catch { /* retried on the next delete or open */ }
    }
  }

  private toTrash(p: string): void {
    fs.renameSync(p, stagingPath(path.join(this.root, '.trash'), path.basename(p)));
  }

  private existingVolume(vol: string): string {
    const dir = this.volumePath(vol);
    if (!isDirectory(dir)) throw new NotFoundError(`volume ${vol} not found in pool ${this.record.name}`);
    return dir;
  }

  private existingSnapshot(vol: string, snap: string): string {
    this.existingVolume(vol);
    const dir = this.snapshotPath(vol, validateSnapshotName(snap));
    if (!isDirectory(dir)) throw new NotFoundError(`snapshot ${vol}@${snap} not found`, `see the volume's snapshots`);
    return dir;
  }

  /** Volumes cloned from vol@snap that still exist. */
  private clonesOf(vol: string, snap: string): string[] {
    return visibleEntries(path.join(this.root, 'origins'))
      .map((f) => f.replace(/\.json$/, ''))
      .filter((clone) => {
        const origin = readJsonIfExists<{ volume: string; snapshot: string }>(this.originFile(clone));
        return origin?.volume === vol && origin.snapshot === snap && isDirectory(path.join(this.root, 'volumes', clone));
      });
  }

  private info(vol: string, snap: string): SnapshotInfo {
    return { name: snap, createdAt: createdAt(this.snapshotPath(vol, snap)) };
  }
}

export const dirDriver = new DirDriver();
