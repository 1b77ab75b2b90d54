import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../lib/errors';
import { findCommand, run, RunOptions, RunResult, succeeds } from '../lib/process';
import { withUndo } from '../lib/undo';
import type { UndoStack } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, storageFailure } from './errors';
import { attachLoop, createImage, detachLoops, ensureLoop, isMountpoint, loopDevicesOf, mount, unmount } from './loop';
import { packTree } from '../archive/tree-tar';
import { openForDestroy, requireNoSnapshot, requireNoVolume, requireSnapshot, requireVolume } from './presence';
import { checkReceive, checkSendOptions, endingAfter, receiveTar, sharedRun } from './transfer';
import { removeTree, visibleEntries } from './tree';
import { claimPoolDir, requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from './validate';
import { compareText } from '../lib/compare';

/**
 * The lvm driver: a thin volume (ext4) per volume in one thin pool, thin
 * snapshots (taken with the filesystem frozen, so they are clean), clones as
 * writable thin snapshots. No native send format: tar only.
 *
 * LV names use "+", which LVM allows and tsvz names can't contain, so they
 * parse back unambiguously (and never start with "snapshot"/"pvmove"):
 *   v+<vol>          volume, mounted at <rootDir>/pools/<name>/volumes/<vol>
 *   s+<vol>+<snap>   snapshot (not active unless being sent)
 *   t+<pid>-<tag>    temporaries (rollback staging)
 *
 * Pools: `--size` makes a loop image, PV, VG (named after the pool) and thin
 * pool under the root; `--source VG` adds a thin pool (of --size, or 90% of
 * the free space) to an existing volume group.
 *
 * Not testable on kernels without device-mapper (the VM lane runs it).
 */

export interface LvmPoolRecord extends PoolRecord {
  driver: 'lvm';
  vg: string;
  thinpool: string;
  /** Mountpoints: <dir>/volumes/<vol>, <dir>/tmp/<n>; --size pools also keep their image here. */
  dir: string;
  /** Virtual size of each thin volume (thin: space is used only as written). */
  volumeSize: number;
  /** --size pools: the loop image behind the PV; the VG is ours to remove. */
  image?: string;
}

const MIN_SIZE = 64 * 1024 ** 2;
const THINPOOL = 'tsvz-thinpool';
const DEFAULT_VOLUME_SIZE = 10 * 1024 ** 3;
/**
 * A thin volume reads zeros where nothing was written, so ext4 need not zero
 * its inode tables (ext4lazyinit would write ~160 MiB per 10 GiB volume into
 * the pool) nor its journal (mkfs lazy_journal_init).
 */
const VOLUME_MOUNT = ['-o', 'noinit_itable'];

/**
 * LVM without udev (the VM lane, containers) must create device nodes itself
 * and not wait for udev; with a read-only /etc it must not write backups.
 */
function lvmConfig(): string[] {
  const config: string[] = [];
  if (!fs.existsSync('/run/udev/control')) config.push('activation{udev_sync=0 udev_rules=0 monitoring=0}');
  try {
    fs.accessSync('/etc/lvm', fs.constants.W_OK);
  } catch {
    config.push('backup{backup=0 archive=0}');
  }
  return config.length > 0 ? ['--config', config.join(' ')] : [];
}

function lvm(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(cmd, [...lvmConfig(), ...args], opts);
}

async function hasDeviceMapper(): Promise<boolean> {
  if (fs.readFileSync('/proc/misc', 'utf8').includes('device-mapper')) return true;
  // The control node may exist without a driver behind it; opening it loads dm_mod if it can.
  return !!findCommand('dmsetup') && (await succeeds('dmsetup', ['version'], 15_000));
}

interface LvRow {
  lv_name: string;
  origin: string;
  lv_time: string;
  lv_size: string;
  data_percent: string;
}

class LvmDriver implements StorageDriver {
  readonly name = 'lvm';
  readonly capabilities: DriverCapabilities = { atomicSnapshot: true, cowClone: true, incrementalSend: false, rollbackToAny: true, sendFormats: ['tar'] };

  async missing(): Promise<string[]> {
    const missing: string[] = [];
    if (!findCommand('lvm') || !findCommand('lvcreate')) missing.push('lvm2 not installed');
    if (!findCommand('thin_check')) missing.push('thin-provisioning-tools not installed');
    if (!findCommand('mkfs.ext4')) missing.push('e2fsprogs not installed');
    if (!findCommand('fsfreeze')) missing.push('fsfreeze (util-linux) not installed');
    if (!(await hasDeviceMapper())) missing.push('no device-mapper on this kernel');
    return missing;
  }

  async createPool(spec: PoolSpec): Promise<LvmPoolRecord> {
    validatePoolSpec(spec, MIN_SIZE, { sizeWithSource: true });
    await requireUsable(this);
    if (spec.source === undefined && spec.size === undefined) {
      throw new InvalidArgumentError('an lvm pool needs --source (an existing volume group) or --size (a loop-backed volume group under the root)');
    }
    const dir = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(path.join(dir, 'volumes'), { recursive: true, mode: 0o711 });
      fs.mkdirSync(path.join(dir, 'tmp'), { mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      let vg: string;
      let image: string | undefined;
      if (spec.source !== undefined) {
        vg = spec.source;
        if (!(await succeeds('vgs', [...lvmConfig(), vg]))) throw new NotFoundError(`volume group ${vg} does not exist`, 'create it (vgcreate) or use --size');
        if (await lvExists(vg, THINPOOL)) throw new AlreadyExistsError(`volume group ${vg} already holds a tsvz pool (${vg}/${THINPOOL})`);
      } else {
        vg = spec.name;
        if (await succeeds('vgs', [...lvmConfig(), vg])) throw new AlreadyExistsError(`a volume group named ${vg} already exists on this host`);
        image = path.join(dir, 'lvm.img');
        createImage(image, spec.size!, undo);
        const dev = await attachLoop(image, undo);
        await lvm('pvcreate', ['-qq', '-y', dev]);
        undo.add(`pvremove ${dev}`, async () => { await lvm('pvremove', ['-qq', '-y', dev], { allowFail: true }); });
        await lvm('vgcreate', ['-qq', '-y', vg, dev]);
        undo.add(`vgremove ${vg}`, async () => { await lvm('vgremove', ['-qq', '-f', vg], { allowFail: true }); });
      }
      const size = spec.source !== undefined && spec.size !== undefined ? ['-L', `${spec.size}b`] : ['-l', '90%FREE'];
      await lvm('lvcreate', ['-qq', '-y', '--type', 'thin-pool', ...size, '-n', THINPOOL, vg]);
      undo.add(`lvremove ${vg}/${THINPOOL}`, async () => { await lvm('lvremove', ['-qq', '-f', `${vg}/${THINPOOL}`], { allowFail: true }); });
      return { name: spec.name, driver: 'lvm', vg, thinpool: THINPOOL, dir, volumeSize: DEFAULT_VOLUME_SIZE, image };
    });
  }

  async openPool(record: PoolRecord): Promise<LvmPool> {
    const rec = record as LvmPoolRecord;
    const missing = await this.missing();
    if (missing.length > 0) throw new NotSupportedError(`cannot open pool ${rec.name}: ${missing.join('; ')}`);
    if (rec.image) {
      if (!fs.existsSync(rec.image)) throw new NotFoundError(`pool ${rec.name}: image ${rec.image} is missing`);
      await ensureLoop(rec.image);
      await lvm('pvscan', ['-qq', '--cache'], { allowFail: true });
    }
    if (!(await lvExists(rec.vg, rec.thinpool))) throw new NotFoundError(`pool ${rec.name}: thin pool ${rec.vg}/${rec.thinpool} does not exist`);
    await lvm('vgchange', ['-qq', '-ay', rec.vg]); // activates the volumes; snapshots keep their activation-skip flag
    const pool = new LvmPool(rec, this);
    await pool.mountAll();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as LvmPoolRecord;
    const { pool, volumes } = await openForDestroy(this, rec, opts.force);
    for (const vol of volumes) await pool.deleteVolume(vol);
    for (const lv of (await pool.rows()).filter((r) => /^[vst]\+/.test(r.lv_name))) await lvm('lvremove', ['-qq', '-f', `${rec.vg}/${lv.lv_name}`]);
    await lvm('lvremove', ['-qq', '-f', `${rec.vg}/${rec.thinpool}`]);
    if (rec.image) {
      const devs = (await run('losetup', ['-j', rec.image])).stdout.split('\n').map((l) => l.split(':')[0]).filter(Boolean);
      await lvm('vgremove', ['-qq', '-f', rec.vg]);
      for (const dev of devs) await lvm('pvremove', ['-qq', '-y', dev], { allowFail: true });
      await detachLoops(rec.image);
    }
    await removeTree(rec.dir);
  }

  /** A --size VG made on a loop device of the home's image. */
  async abandon(spec: PoolSpec, home: string): Promise<void> {
    if (spec.source !== undefined) return;
    const devs = await loopDevicesOf(path.join(home, 'lvm.img'));
    if (devs.length === 0) return;
    const pvs = await lvm('pvs', ['--noheadings', '-o', 'pv_name,vg_name'], { allowFail: true });
    const ours = pvs.stdout.split('\n').map((l) => l.trim().split(/\s+/)).some(([pv, vg]) => devs.includes(pv) && vg === spec.name);
    if (ours) await lvm('vgremove', ['-qq', '-f', spec.name], { allowFail: true });
    for (const dev of devs) await lvm('pvremove', ['-qq', '-f', dev], { allowFail: true });
  }

  describeSource(record: PoolRecord): string {
    const rec = record as LvmPoolRecord;
    return rec.image ? `${rec.vg} (${rec.image})` : String(rec.vg);
  }
}

function lvExists(vg: string, lv: string): Promise<boolean> {
  return succeeds('lvs', [...lvmConfig(), `${vg}/${lv}`]);
}

const volumeLv = (vol: string) => `v+${vol}`;
const snapshotLv = (vol: string, snap: string) => `s+${vol}+${snap}`;
const tempLv = () => `t+${process.pid}-${crypto.randomBytes(4).toString('hex')}`;

class LvmPool implements Pool {
  constructor(readonly record: LvmPoolRecord, readonly driver: LvmDriver) {}

  private get vg(): string { return this.record.vg; }
  private dev(lv: string): string { return `/dev/${this.vg}/${lv}`; }

  volumePath(vol: string): string {
    return path.join(this.record.dir, 'volumes', validateVolumeName(vol));
  }

  snapshotHandle(vol: string, snap: string): string {
    return `${this.vg}/${snapshotLv(validateVolumeName(vol), validateSnapshotName(snap))}`;
  }

  async hasVolume(vol: string): Promise<boolean> {
    return lvExists(this.vg, volumeLv(validateVolumeName(vol)));
  }

  async hasSnapshot(vol: string, snap: string): Promise<boolean> {
    return succeeds('lvs', [...lvmConfig(), this.snapshotHandle(vol, snap)]);
  }

  async rows(): Promise<LvRow[]> {
    const out = (await lvm('lvs', ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'lv_name,origin,lv_time,lv_size,data_percent', this.vg])).stdout;
    return (JSON.parse(out).report?.[0]?.lv ?? []) as LvRow[];
  }

  async listVolumes(): Promise<string[]> {
    return (await this.rows()).filter((r) => r.lv_name.startsWith('v+')).map((r) => r.lv_name.slice(2)).sort();
  }

  async createVolume(vol: string): Promise<string> {
    const dir = this.volumePath(vol);
    await requireNoVolume(this, vol);
    try {
      await withUndo(async (undo) => {
        await lvm('lvcreate', ['-qq', '-y', '-V', `${this.record.volumeSize}b`, '-T', `${this.vg}/${this.record.thinpool}`, '-n', volumeLv(vol)]);
        undo.add(`lvremove ${volumeLv(vol)}`, () => this.remove(volumeLv(vol)));
        await run('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=1,lazy_journal_init=1', this.dev(volumeLv(vol))], { dieWithParent: true });
        await mount(this.dev(volumeLv(vol)), dir, VOLUME_MOUNT, undo);
        // A rootfs starts empty (receive and templates insist); e2fsck recreates lost+found if it needs one.
        fs.rmdirSync(path.join(dir, 'lost+found'));
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
      await unmount(dir);
      for (const r of (await this.rows()).filter((row) => row.lv_name.startsWith(`s+${vol}+`))) await this.remove(r.lv_name);
      await this.remove(volumeLv(vol));
      if (fs.existsSync(dir)) fs.rmdirSync(dir);
    } catch (err) {
      throw storageFailure(`delete volume ${vol}`, this.record.name, err);
    }
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    await requireVolume(this, vol);
    await requireNoSnapshot(this, vol, snap);
    const lv = snapshotLv(vol, snap);
    try {
      await this.frozen(vol, () => lvm('lvcreate', ['-qq', '-y', '-s', '-n', lv, `${this.vg}/${volumeLv(vol)}`]));
    } catch (err) {
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    return (await this.listSnapshots(vol)).find((s) => s.name === snap)!;
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    await requireVolume(this, vol);
    const prefix = `s+${vol}+`;
    return (await this.rows())
      .filter((r) => r.lv_name.startsWith(prefix))
      .map((r) => ({ name: r.lv_name.slice(prefix.length), createdAt: lvTime(r.lv_time) }))
      .sort((a, b) => compareText(a.createdAt ?? '', b.createdAt ?? '') || compareText(a.name, b.name));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const lv = snapshotLv(vol, snap);
    // A volume rolled back to this snapshot is a thin snapshot of it too, but not a clone.
    const clones = (await this.rows()).filter((r) => r.origin === lv && r.lv_name.startsWith('v+') && r.lv_name !== volumeLv(vol)).map((r) => r.lv_name.slice(2));
    if (clones.length > 0) throw dependentClones(vol, snap, clones);
    try {
      await this.remove(lv);
    } catch (err) {
      throw storageFailure(`delete snapshot ${vol}@${snap}`, this.record.name, err);
    }
  }

  /** A new thin snapshot of the snapshot takes the volume's name; the old volume goes. */
  async rollback(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const from = snapshotLv(vol, snap);
    const dir = this.volumePath(vol);
    const current = volumeLv(vol);
    try {
      await withUndo(async (undo) => {
        const fresh = await this.activeSnapshotOf(from, tempLv(), undo);
        await unmount(dir);
        undo.add(`remount ${dir}`, () => mount(this.dev(current), dir, VOLUME_MOUNT));
        const old = tempLv();
        await this.rename(current, old, undo);
        await this.rename(fresh, current, undo);
        await mount(this.dev(current), dir, VOLUME_MOUNT, undo);
        await this.remove(old);
      });
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    if (snap === undefined) await requireVolume(this, src);
    else await requireSnapshot(this, src, snap);
    const from = snap === undefined ? volumeLv(src) : snapshotLv(src, snap);
    const dir = this.volumePath(dst);
    await requireNoVolume(this, dst);
    try {
      await withUndo(async (undo) => {
        const take = () => this.activeSnapshotOf(from, volumeLv(dst), undo);
        if (snap === undefined) await this.frozen(src, take);
        else await take();
        await mount(this.dev(volumeLv(dst)), dir, VOLUME_MOUNT, undo);
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return dir;
  }

  async send(vol: string, snap: string, opts: SendOptions): Promise<Readable> {
    checkSendOptions(this.driver, opts);
    await requireSnapshot(this, vol, snap);
    const lv = snapshotLv(vol, snap);
    const mnt = path.join(this.record.dir, 'tmp', `send-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    const release = sharedRun(async () => {
      await unmount(mnt);
      fs.rmSync(mnt, { recursive: true, force: true });
      // Another send of the same snapshot may still use it: then it stays active.
      await lvm('lvchange', ['-qq', '-an', `${this.vg}/${lv}`], { allowFail: true });
    });
    try {
      await lvm('lvchange', ['-qq', '-ay', '-K', `${this.vg}/${lv}`]);
      // noload: never replay the journal into the snapshot (it was frozen, so there is nothing to replay).
      await mount(this.dev(lv), mnt, ['-o', 'ro,noload']);
    } catch (err) {
      await release();
      throw storageFailure(`send ${vol}@${snap}`, this.record.name, err);
    }
    return endingAfter(packTree(mnt, { onClose: release }), release);
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    checkReceive(this.driver, vol, snap, opts);
    await receiveTar(this, vol, snap, input);
  }

  async usage(): Promise<PoolUsage> {
    const pool = (await this.rows()).find((r) => r.lv_name === this.record.thinpool);
    if (!pool) return {};
    const size = Number(pool.lv_size);
    return { sizeBytes: size, usedBytes: Math.round((size * Number(pool.data_percent || 0)) / 100) };
  }

  /** After a reboot: mount every volume that is not. */
  async mountAll(): Promise<void> {
    for (const vol of await this.listVolumes()) {
      if (!isMountpoint(this.volumePath(vol))) await mount(this.dev(volumeLv(vol)), this.volumePath(vol), VOLUME_MOUNT);
    }
    // Mountpoints of volumes that are gone (deleted while tsvz was killed).
    for (const e of visibleEntries(path.join(this.record.dir, 'volumes'))) {
      const dir = path.join(this.record.dir, 'volumes', e);
      if (!isMountpoint(dir) && !(await lvExists(this.vg, volumeLv(e)))) fs.rmdirSync(dir);
    }
  }

  /** A writable, active thin snapshot `name` of `origin`; undo removes it. */
  private async activeSnapshotOf(origin: string, name: string, undo: UndoStack): Promise<string> {
    await lvm('lvcreate', ['-qq', '-y', '-s', '-kn', '-n', name, `${this.vg}/${origin}`]);
    undo.add(`lvremove ${name}`, () => this.remove(name));
    await lvm('lvchange', ['-qq', '-ay', `${this.vg}/${name}`]);
    return name;
  }

  private async rename(from: string, to: string, undo: UndoStack): Promise<void> {
    await lvm('lvrename', ['-qq', this.vg, from, to]);
    undo.add(`rename ${to} back`, async () => { await lvm('lvrename', ['-qq', this.vg, to, from]); });
  }

  private async remove(lv: string): Promise<void> {
    await lvm('lvremove', ['-qq', '-f', `${this.vg}/${lv}`]);
  }

  /**
   * Run `fn` (an lvcreate -s) with the volume's filesystem consistent: LVM
   * suspends the origin with lockfs, which freezes it. An fsfreeze of our own
   * would make that suspend fail with EBUSY on kernels before 6.6.
   */
  private frozen<T>(_vol: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** lvs prints "2024-05-01 10:00:00 +0000". */
function lvTime(text: string): string | undefined {
  const d = new Date(text.replace(' ', 'T').replace(' ', ''));
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export const lvmDriver = new LvmDriver();
