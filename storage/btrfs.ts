import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { findCommand, run, runOutput } from '../lib/process';
import { UndoStack, withUndo } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, StorageError, storageFailure } from './errors';
import { exchangePaths } from '../lib/libc-fs';
import { attachLoop, createImage, detachLoops, ensureLoop, isMountpoint, mount, unmount } from './loop';
import { packTree } from '../archive/tree-tar';
import { FULL_STREAM_HINT, openForDestroy, requireNoSnapshot, requireNoVolume, requireSnapshot, requireVolume } from './presence';
import { checkReceive, checkSendOptions, holdInput, receiveTar } from './transfer';
import { byCreation, createdAt, filesystemUsage, isDirectory, isStaleStaging, removeTree, stagingPath, visibleEntries } from './tree';
import { checkSourceDir, claimPoolDir, requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from './validate';
import { faultPause } from '../lib/fault';

/**
 * The btrfs driver: a subvolume per volume, read-only snapshots, clones as
 * writable snapshots, `btrfs send -p` for incrementals.
 *
 *   <mnt>/volumes/<vol>                       writable subvolume (the rootfs)
 *   <mnt>/snapshots/<vol>/<snap>/rootfs       read-only subvolume
 *
 * Why a directory per snapshot: the kernel refuses to move a read-only
 * subvolume to another directory (EROFS), and `btrfs receive` names the new
 * subvolume after the sender's. Receiving into a fresh staging directory,
 * renaming inside it, then moving the (plain) directory gives any name.
 *
 * Pools: `--size` makes a loop image under the root (mixed data/metadata
 * block groups below 1 GiB, as mkfs.btrfs recommends, so small pools can
 * use their space); `--source` uses an empty directory on a mounted btrfs.
 */

export interface BtrfsPoolRecord extends PoolRecord {
  driver: 'btrfs';
  /** Where the filesystem (or the --source directory) is. */
  mountpoint: string;
  /** <rootDir>/pools/<name>, which every pool owns (it holds the name, and the loop image). */
  dir: string;
  /** Loop-backed pools: the image. */
  image?: string;
}

const BTRFS_MAGIC = 0x9123683e;
const MIN_SIZE = 64 * 1024 ** 2;
const MIXED_BELOW = 1024 ** 3;

class BtrfsDriver implements StorageDriver {
  readonly name = 'btrfs';
  readonly capabilities: DriverCapabilities = { atomicSnapshot: true, cowClone: true, incrementalSend: true, rollbackToAny: true, sendFormats: ['btrfs', 'tar'] };

  async missing(): Promise<string[]> {
    const missing: string[] = [];
    if (!findCommand('btrfs') || !findCommand('mkfs.btrfs')) missing.push('btrfs-progs not installed');
    if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('\tbtrfs')) missing.push('no btrfs in this kernel (modprobe btrfs)');
    return missing;
  }

  async createPool(spec: PoolSpec): Promise<BtrfsPoolRecord> {
    validatePoolSpec(spec, MIN_SIZE);
    await requireUsable(this);
    if (spec.source !== undefined) return this.adopt(spec);
    if (spec.size === undefined) {
      throw new InvalidArgumentError('a btrfs pool needs --size (a loop image under the root) or --source (an empty directory on a mounted btrfs)');
    }
    if (!findCommand('losetup')) throw new StorageError('cannot create a loop-backed pool: losetup not installed (util-linux)');
    const dir = claimPoolDir(spec);
    const image = path.join(dir, 'btrfs.img');
    const mnt = path.join(dir, 'mnt');
    const size = spec.size;
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      createImage(image, size, undo);
      const dev = await attachLoop(image, undo);
      await faultPause('pool-create:attached');
      await run('mkfs.btrfs', ['-q', ...(size < MIXED_BELOW ? ['--mixed'] : []), dev], { dieWithParent: true });
      await mount(dev, mnt, [], undo);
      makeLayout(mnt);
      return { name: spec.name, driver: 'btrfs', mountpoint: mnt, image, dir };
    });
  }

  /** --source: an empty directory on a mounted btrfs; we only add our two directories to it. */
  private async adopt(spec: PoolSpec): Promise<BtrfsPoolRecord> {
    const dir = checkSourceDir(spec.source!, 'btrfs');
    if (fs.statfsSync(dir).type !== BTRFS_MAGIC) {
      throw new InvalidArgumentError(`pool source ${dir} is not on a btrfs filesystem`, 'mount a btrfs there, or use --size for a loop image');
    }
    const home = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(home, { recursive: true, mode: 0o711 });
      undo.add(`remove ${home}`, () => fs.rmSync(home, { recursive: true, force: true }));
      undo.add('remove layout', () => ['volumes', 'snapshots'].forEach((d) => fs.rmSync(path.join(dir, d), { recursive: true, force: true })));
      makeLayout(dir);
      return { name: spec.name, driver: 'btrfs', mountpoint: dir, dir: home };
    });
  }

  async openPool(record: PoolRecord): Promise<BtrfsPool> {
    const rec = record as BtrfsPoolRecord;
    if (rec.image && !isMountpoint(rec.mountpoint)) {
      if (!fs.existsSync(rec.image)) throw new NotFoundError(`pool ${rec.name}: image ${rec.image} is missing`);
      await withUndo(async (undo) => {
        const attached = await ensureLoop(rec.image!);
        undo.add('detach', () => detachLoops(rec.image!));
        await mount(attached, rec.mountpoint);
      });
    }
    if (!isDirectory(path.join(rec.mountpoint, 'volumes')) || fs.statfsSync(rec.mountpoint).type !== BTRFS_MAGIC) {
      throw new NotFoundError(`pool ${rec.name}: no btrfs pool at ${rec.mountpoint}`, 'is the filesystem mounted?');
    }
    const pool = new BtrfsPool(rec, this);
    await pool.sweepStaging();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as BtrfsPoolRecord;
    const { pool, volumes } = await openForDestroy(this, rec, opts.force);
    if (rec.image) {
      await unmount(rec.mountpoint);
      await faultPause('pool-rm:unmounted');
      await detachLoops(rec.image);
    } else {
      for (const vol of volumes) await pool.deleteVolume(vol);
      for (const d of ['volumes', 'snapshots']) await removeTree(path.join(rec.mountpoint, d));
    }
    await removeTree(rec.dir);
  }

  /** The layout made in a --source, where still empty. */
  async abandon(spec: PoolSpec): Promise<void> {
    if (spec.source === undefined) return;
    for (const sub of ['volumes', 'snapshots']) await fs.promises.rmdir(path.join(path.resolve(spec.source), sub)).catch(() => undefined);
  }

  describeSource(record: PoolRecord): string {
    const rec = record as BtrfsPoolRecord;
    return String(rec.image ?? rec.mountpoint);
  }
}

function makeLayout(mnt: string): void {
  for (const d of ['volumes', 'snapshots']) fs.mkdirSync(path.join(mnt, d), { mode: 0o711 });
}

// ---- subvolume primitives ----

async function createSubvolume(p: string): Promise<void> {
  await run('btrfs', ['-q', 'subvolume', 'create', p]);
}

async function snapshotSubvolume(src: string, dst: string, readOnly: boolean): Promise<void> {
  await run('btrfs', ['-q', 'subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), src, dst]);
}

async function deleteSubvolume(p: string): Promise<void> {
  if (fs.existsSync(p)) await run('btrfs', ['-q', 'subvolume', 'delete', p]);
}

/** A subvolume's root directory always has inode 256. */
function isSubvolume(p: string): boolean {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return !!st?.isDirectory() && st.ino === 256;
}

async function subvolumeUuid(p: string): Promise<string> {
  const m = /^\s*UUID:\s*(\S+)/m.exec((await run('btrfs', ['subvolume', 'show', p])).stdout);
  if (!m) throw new StorageError(`cannot read the UUID of subvolume ${p}`);
  return m[1];
}

/** Remove a staging directory and any (half-received) subvolume in it. */
async function discardStaging(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir)) {
    const p = path.join(dir, e);
    if (isSubvolume(p)) await deleteSubvolume(p);
  }
  await removeTree(dir);
}

class BtrfsPool implements Pool {
  constructor(readonly record: BtrfsPoolRecord, readonly driver: BtrfsDriver) {}

  private get mnt(): string { return this.record.mountpoint; }
  private get volumesDir(): string { return path.join(this.mnt, 'volumes'); }
  private snapshotsDir(vol: string): string { return path.join(this.mnt, 'snapshots', vol); }
  private snapshotDir(vol: string, snap: string): string { return path.join(this.snapshotsDir(vol), snap); }
  private snapshotRootfs(vol: string, snap: string): string { return path.join(this.snapshotDir(vol, snap), 'rootfs'); }

  volumePath(vol: string): string {
    return path.join(this.volumesDir, validateVolumeName(vol));
  }

  snapshotHandle(vol: string, snap: string): string {
    return this.snapshotRootfs(validateVolumeName(vol), validateSnapshotName(snap));
  }

  async hasVolume(vol: string): Promise<boolean> {
    return isSubvolume(this.volumePath(vol));
  }

  async hasSnapshot(vol: string, snap: string): Promise<boolean> {
    return isSubvolume(this.snapshotHandle(vol, snap));
  }

  async listVolumes(): Promise<string[]> {
    return visibleEntries(this.volumesDir);
  }

  async createVolume(vol: string): Promise<string> {
    const dir = this.volumePath(vol);
    await requireNoVolume(this, vol);
    try {
      await withUndo(async (undo) => {
        await createSubvolume(dir);
        undo.add(`delete ${dir}`, () => deleteSubvolume(dir));
        fs.mkdirSync(this.snapshotsDir(vol), { recursive: true, mode: 0o711 });
      });
    } catch (err) {
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    return dir;
  }

  async deleteVolume(vol: string): Promise<void> {
    await requireVolume(this, vol);
    const dir = this.volumePath(vol);
    try {
      await deleteSubvolume(dir);
      for (const e of fs.existsSync(this.snapshotsDir(vol)) ? fs.readdirSync(this.snapshotsDir(vol)) : []) {
        await discardStaging(path.join(this.snapshotsDir(vol), e));
      }
      await removeTree(this.snapshotsDir(vol));
    } catch (err) {
      throw storageFailure(`delete volume ${vol}`, this.record.name, err);
    }
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    await requireVolume(this, vol);
    await requireNoSnapshot(this, vol, snap);
    const src = this.volumePath(vol);
    const dst = this.snapshotDir(vol, snap);
    try {
      await withUndo(async (undo) => {
        fs.mkdirSync(this.snapshotsDir(vol), { recursive: true, mode: 0o711 });
        const stage = stagingPath(this.snapshotsDir(vol), `new-${snap}`);
        fs.mkdirSync(stage, { mode: 0o711 });
        undo.add(`discard ${stage}`, () => discardStaging(stage));
        await snapshotSubvolume(src, path.join(stage, 'rootfs'), true);
        fs.renameSync(stage, dst);
      });
    } catch (err) {
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    return this.info(vol, snap);
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    await requireVolume(this, vol);
    const snaps = visibleEntries(this.snapshotsDir(vol)).filter((snap) => isSubvolume(this.snapshotRootfs(vol, snap)));
    return byCreation(snaps, (snap) => this.snapshotRootfs(vol, snap)).map((snap) => this.info(vol, snap));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const rootfs = this.snapshotRootfs(vol, snap);
    const clones = await this.clonesOf(vol, rootfs);
    if (clones.length > 0) throw dependentClones(vol, snap, clones);
    try {
      await deleteSubvolume(rootfs);
      await removeTree(this.snapshotDir(vol, snap));
    } catch (err) {
      throw storageFailure(`delete snapshot ${vol}@${snap}`, this.record.name, err);
    }
  }

  async rollback(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const rootfs = this.snapshotRootfs(vol, snap);
    const dir = this.volumePath(vol);
    try {
      await withUndo(async (undo) => this.replaceVolume(dir, rootfs, undo));
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
  }

  /** Swap a writable snapshot of `rootfs` in for the volume (one rename), then drop the old one. */
  private async replaceVolume(dir: string, rootfs: string, undo: UndoStack): Promise<void> {
    const tmp = stagingPath(this.volumesDir, `replace-${path.basename(dir)}`);
    await snapshotSubvolume(rootfs, tmp, false);
    undo.add(`delete ${tmp}`, () => deleteSubvolume(tmp));
    exchangePaths(tmp, dir);
    undo.add('swap back', () => exchangePaths(tmp, dir));
    await deleteSubvolume(tmp); // now the old content
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    if (snap === undefined) await requireVolume(this, src);
    else await requireSnapshot(this, src, snap);
    const from = snap === undefined ? this.volumePath(src) : this.snapshotRootfs(src, snap);
    const target = this.volumePath(dst);
    await requireNoVolume(this, dst);
    try {
      await withUndo(async (undo) => {
        await snapshotSubvolume(from, target, false);
        undo.add(`delete ${target}`, () => deleteSubvolume(target));
        fs.mkdirSync(this.snapshotsDir(dst), { recursive: true, mode: 0o711 });
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return target;
  }

  async send(vol: string, snap: string, opts: SendOptions): Promise<Readable> {
    checkSendOptions(this.driver, opts);
    await requireSnapshot(this, vol, snap);
    const rootfs = this.snapshotRootfs(vol, snap);
    if (opts.format === 'tar') return packTree(rootfs);
    if (opts.parent !== undefined) await requireSnapshot(this, vol, opts.parent);
    const parent = opts.parent === undefined ? [] : ['-p', this.snapshotRootfs(vol, opts.parent)];
    return runOutput('btrfs', ['send', '-q', ...parent, rootfs], { dieWithParent: true });
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    const readable = holdInput(input);
    checkReceive(this.driver, vol, snap, opts);
    if (opts.format === 'tar') return receiveTar(this, vol, snap, input);
    try {
      if (opts.parent === undefined) await requireNoVolume(this, vol, FULL_STREAM_HINT);
      else await requireSnapshot(this, vol, opts.parent);
      const exists = opts.parent !== undefined;
      await requireNoSnapshot(this, vol, snap);
      await withUndo(async (undo) => {
        fs.mkdirSync(this.snapshotsDir(vol), { recursive: true, mode: 0o711 });
        const stage = stagingPath(this.snapshotsDir(vol), `recv-${snap}`);
        fs.mkdirSync(stage, { mode: 0o711 });
        undo.add(`discard ${stage}`, () => discardStaging(stage));
        readable();
        await run('btrfs', ['receive', '-q', stage], { input, dieWithParent: true });
        const got = fs.readdirSync(stage);
        if (got.length !== 1) throw new StorageError(`btrfs receive produced ${got.length} subvolumes, expected one`);
        if (got[0] !== 'rootfs') fs.renameSync(path.join(stage, got[0]), path.join(stage, 'rootfs'));
        const dst = this.snapshotDir(vol, snap);
        fs.renameSync(stage, dst);
        undo.add(`discard ${dst}`, () => discardStaging(dst));
        const rootfs = path.join(dst, 'rootfs');
        if (!exists) {
          await snapshotSubvolume(rootfs, this.volumePath(vol), false);
          undo.add(`delete volume ${vol}`, () => deleteSubvolume(this.volumePath(vol)));
        } else {
          await this.replaceVolume(this.volumePath(vol), rootfs, undo);
        }
      });
    } catch (err) {
      input.destroy();
      throw storageFailure(`receive ${vol}@${snap}`, this.record.name, err);
    }
  }

  async usage(): Promise<PoolUsage> {
    return filesystemUsage(this.mnt);
  }

  /** Left-overs of operations whose process was killed mid-way (live ones are left alone). */
  async sweepStaging(): Promise<void> {
    for (const e of fs.readdirSync(this.volumesDir).filter(isStaleStaging)) await deleteSubvolume(path.join(this.volumesDir, e));
    for (const vol of visibleEntries(path.join(this.mnt, 'snapshots'))) {
      for (const e of fs.readdirSync(this.snapshotsDir(vol)).filter(isStaleStaging)) await discardStaging(path.join(this.snapshotsDir(vol), e));
    }
  }

  /**
   * Volumes made from this snapshot: their subvolume's parent UUID is the
   * snapshot's. (A volume rolled back to or received as its own snapshot is
   * not a clone of it.)
   */
  private async clonesOf(vol: string, rootfs: string): Promise<string[]> {
    const uuid = await subvolumeUuid(rootfs);
    const clones: string[] = [];
    for (const line of (await run('btrfs', ['subvolume', 'list', '-uq', this.mnt])).stdout.split('\n')) {
      const m = /parent_uuid\s+(\S+)\s+uuid\s+\S+\s+path\s+(.+)$/.exec(line);
      if (!m || m[1] !== uuid) continue;
      const name = path.basename(m[2]);
      if (path.basename(path.dirname(m[2])) === 'volumes' && name !== vol && !name.startsWith('.') && isSubvolume(path.join(this.volumesDir, name))) {
        clones.push(name);
      }
    }
    return clones.sort();
  }

  private info(vol: string, snap: string): SnapshotInfo {
    return { name: snap, createdAt: createdAt(this.snapshotRootfs(vol, snap)) };
  }
}

export const btrfsDriver = new BtrfsDriver();
