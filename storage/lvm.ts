import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../lib/errors';
import { findCommand } from '../lib/process';
import { withUndo } from '../lib/undo';
import type { UndoStack } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, StorageError, storageFailure } from './errors';
import { attachLoop, createImage, detachLoops, ensureLoop, isMountpoint, mount, unmount } from './loop';
import { packTree } from '../archive/tree-tar';
import { succeeds, tool, ToolOptions } from './tool';
import { checkReceive, checkSendOptions, receiveTar } from './transfer';
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

function lvm(cmd: string, args: string[], opts: ToolOptions = {}) {
  return tool(cmd, [...lvmConfig(), ...args], opts);
}

function hasDeviceMapper(): boolean {
  if (fs.readFileSync('/proc/misc', 'utf8').includes('device-mapper')) return true;
  // The control node may exist without a driver behind it; opening it loads dm_mod if it can.
  return !!findCommand('dmsetup') && succeeds('dmsetup', ['version'], 15_000);
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

  missing(): string[] {
    const missing: string[] = [];
    if (!findCommand('lvm') || !findCommand('lvcreate')) missing.push('lvm2 not installed');
    if (!findCommand('thin_check')) missing.push('thin-provisioning-tools not installed');
    if (!findCommand('mkfs.ext4')) missing.push('e2fsprogs not installed');
    if (!findCommand('fsfreeze')) missing.push('fsfreeze (util-linux) not installed');
    if (!hasDeviceMapper()) missing.push('no device-mapper on this kernel');
    return missing;
  }

  async createPool(spec: PoolSpec): Promise<LvmPoolRecord> {
    validatePoolSpec(spec, MIN_SIZE, { sizeWithSource: true });
    requireUsable(this);
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
        if (!succeeds('vgs', [...lvmConfig(), vg])) throw new NotFoundError(`volume group ${vg} does not exist`, 'create it (vgcreate) or use --size');
        if (lvExists(vg, THINPOOL)) throw new AlreadyExistsError(`volume group ${vg} already holds a tsvz pool (${vg}/${THINPOOL})`);
      } else {
        vg = spec.name;
        if (succeeds('vgs', [...lvmConfig(), vg])) throw new AlreadyExistsError(`a volume group named ${vg} already exists on this host`);
        image = path.join(dir, 'lvm.img');
        createImage(image, spec.size!, undo);
        const dev = attachLoop(image, undo);
        lvm('pvcreate', ['-qq', '-y', dev]);
        undo.add(`pvremove ${dev}`, () => void lvm('pvremove', ['-qq', '-y', dev], { allowFail: true }));
        lvm('vgcreate', ['-qq', '-y', vg, dev]);
        undo.add(`vgremove ${vg}`, () => void lvm('vgremove', ['-qq', '-f', vg], { allowFail: true }));
      }
      const size = spec.source !== undefined && spec.size !== undefined ? ['-L', `${spec.size}b`] : ['-l', '90%FREE'];
      lvm('lvcreate', ['-qq', '-y', '--type', 'thin-pool', ...size, '-n', THINPOOL, vg]);
      undo.add(`lvremove ${vg}/${THINPOOL}`, () => void lvm('lvremove', ['-qq', '-f', `${vg}/${THINPOOL}`], { allowFail: true }));
      return { name: spec.name, driver: 'lvm', vg, thinpool: THINPOOL, dir, volumeSize: DEFAULT_VOLUME_SIZE, image };
    });
  }

  async openPool(record: PoolRecord): Promise<LvmPool> {
    const rec = record as LvmPoolRecord;
    const missing = this.missing();
    if (missing.length > 0) throw new NotSupportedError(`cannot open pool ${rec.name}: ${missing.join('; ')}`);
    if (rec.image) {
      if (!fs.existsSync(rec.image)) throw new NotFoundError(`pool ${rec.name}: image ${rec.image} is missing`);
      ensureLoop(rec.image);
      lvm('pvscan', ['-qq', '--cache'], { allowFail: true });
    }
    if (!lvExists(rec.vg, rec.thinpool)) throw new NotFoundError(`pool ${rec.name}: thin pool ${rec.vg}/${rec.thinpool} does not exist`);
    lvm('vgchange', ['-qq', '-ay', rec.vg]); // activates the volumes; snapshots keep their activation-skip flag
    const pool = new LvmPool(rec, this);
    await pool.mountAll();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as LvmPoolRecord;
    const pool = await this.openPool(rec);
    const vols = await pool.listVolumes();
    if (vols.length > 0 && !opts.force) {
      throw new StorageError(`pool ${rec.name} still has volumes: ${vols.join(', ')}`, { code: 'ENOTEMPTY', hint: 'delete them first, or force' });
    }
    for (const vol of vols) await pool.deleteVolume(vol);
    for (const lv of pool.rows().filter((r) => /^[vst]\+/.test(r.lv_name))) lvm('lvremove', ['-qq', '-f', `${rec.vg}/${lv.lv_name}`]);
    lvm('lvremove', ['-qq', '-f', `${rec.vg}/${rec.thinpool}`]);
    if (rec.image) {
      const devs = tool('losetup', ['-j', rec.image]).stdout.split('\n').map((l) => l.split(':')[0]).filter(Boolean);
      lvm('vgremove', ['-qq', '-f', rec.vg]);
      for (const dev of devs) lvm('pvremove', ['-qq', '-y', dev], { allowFail: true });
      detachLoops(rec.image);
    }
    removeTree(rec.dir);
  }
}

function lvExists(vg: string, lv: string): boolean {
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

  rows(): LvRow[] {
    const out = lvm('lvs', ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'lv_name,origin,lv_time,lv_size,data_percent', this.vg]).stdout;
    return (JSON.parse(out).report?.[0]?.lv ?? []) as LvRow[];
  }

  async listVolumes(): Promise<string[]> {
    return this.rows().filter((r) => r.lv_name.startsWith('v+')).map((r) => r.lv_name.slice(2)).sort();
  }

  async createVolume(vol: string): Promise<string> {
    const dir = this.volumePath(vol);
    if (lvExists(this.vg, volumeLv(vol))) throw new AlreadyExistsError(`volume ${vol} already exists in pool ${this.record.name}`);
    try {
      await withUndo(async (undo) => {
        lvm('lvcreate', ['-qq', '-y', '-V', `${this.record.volumeSize}b`, '-T', `${this.vg}/${this.record.thinpool}`, '-n', volumeLv(vol)]);
        undo.add(`lvremove ${volumeLv(vol)}`, () => this.remove(volumeLv(vol)));
        tool('mkfs.ext4', ['-q', '-E', 'lazy_itable_init=1,lazy_journal_init=1', this.dev(volumeLv(vol))]);
        mount(this.dev(volumeLv(vol)), dir, VOLUME_MOUNT, undo);
        // A rootfs starts empty (receive and templates insist); e2fsck recreates lost+found if it needs one.
        fs.rmdirSync(path.join(dir, 'lost+found'));
      });
    } catch (err) {
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    return dir;
  }

  async deleteVolume(vol: string): Promise<void> {
    this.existingVolume(vol);
    const dir = this.volumePath(vol);
    try {
      unmount(dir);
      for (const r of this.rows().filter((row) => row.lv_name.startsWith(`s+${vol}+`))) this.remove(r.lv_name);
      this.remove(volumeLv(vol));
      if (fs.existsSync(dir)) fs.rmdirSync(dir);
    } catch (err) {
      throw storageFailure(`delete volume ${vol}`, this.record.name, err);
    }
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    this.existingVolume(vol);
    const lv = snapshotLv(vol, validateSnapshotName(snap));
    if (lvExists(this.vg, lv)) throw new AlreadyExistsError(`snapshot ${vol}@${snap} already exists`);
    try {
      this.frozen(vol, () => lvm('lvcreate', ['-qq', '-y', '-s', '-n', lv, `${this.vg}/${volumeLv(vol)}`]));
    } catch (err) {
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    return (await this.listSnapshots(vol)).find((s) => s.name === snap)!;
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    this.existingVolume(vol);
    const prefix = `s+${vol}+`;
    return this.rows()
      .filter((r) => r.lv_name.startsWith(prefix))
      .map((r) => ({ name: r.lv_name.slice(prefix.length), createdAt: lvTime(r.lv_time) }))
      .sort((a, b) => compareText(a.createdAt ?? '', b.createdAt ?? '') || compareText(a.name, b.name));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    const lv = this.existingSnapshot(vol, snap);
    // A volume rolled back to this snapshot is a thin snapshot of it too, but not a clone.
    const clones = this.rows().filter((r) => r.origin === lv && r.lv_name.startsWith('v+') && r.lv_name !== volumeLv(vol)).map((r) => r.lv_name.slice(2));
    if (clones.length > 0) throw dependentClones(vol, snap, clones);
    try {
      this.remove(lv);
    } catch (err) {
      throw storageFailure(`delete snapshot ${vol}@${snap}`, this.record.name, err);
    }
  }

  /** A new thin snapshot of the snapshot takes the volume's name; the old volume goes. */
  async rollback(vol: string, snap: string): Promise<void> {
    const from = this.existingSnapshot(vol, snap);
    const dir = this.volumePath(vol);
    const current = volumeLv(vol);
    try {
      await withUndo(async (undo) => {
        const fresh = this.activeSnapshotOf(from, tempLv(), undo);
        unmount(dir);
        undo.add(`remount ${dir}`, () => mount(this.dev(current), dir, VOLUME_MOUNT));
        const old = tempLv();
        this.rename(current, old, undo);
        this.rename(fresh, current, undo);
        mount(this.dev(current), dir, VOLUME_MOUNT, undo);
        this.remove(old);
      });
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    this.existingVolume(src);
    const from = snap === undefined ? volumeLv(src) : this.existingSnapshot(src, snap);
    const dir = this.volumePath(dst);
    if (lvExists(this.vg, volumeLv(dst))) throw new AlreadyExistsError(`volume ${dst} already exists in pool ${this.record.name}`);
    try {
      await withUndo(async (undo) => {
        const take = () => this.activeSnapshotOf(from, volumeLv(dst), undo);
        if (snap === undefined) this.frozen(src, take);
        else take();
        mount(this.dev(volumeLv(dst)), dir, VOLUME_MOUNT, undo);
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return dir;
  }

  send(vol: string, snap: string, opts: SendOptions): Readable {
    checkSendOptions(this.driver, opts);
    const lv = this.existingSnapshot(vol, snap);
    const mnt = path.join(this.record.dir, 'tmp', `send-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    const release = () => {
      unmount(mnt);
      fs.rmSync(mnt, { recursive: true, force: true });
      // Another send of the same snapshot may still use it: then it stays active.
      lvm('lvchange', ['-qq', '-an', `${this.vg}/${lv}`], { allowFail: true });
    };
    try {
      lvm('lvchange', ['-qq', '-ay', '-K', `${this.vg}/${lv}`]);
      // noload: never replay the journal into the snapshot (it was frozen, so there is nothing to replay).
      mount(this.dev(lv), mnt, ['-o', 'ro,noload']);
    } catch (err) {
      release();
      throw storageFailure(`send ${vol}@${snap}`, this.record.name, err);
    }
    return packTree(mnt, { onClose: release });
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    checkReceive(this.driver, vol, snap, opts);
    await receiveTar(this, vol, snap, input);
  }

  async usage(): Promise<PoolUsage> {
    const pool = this.rows().find((r) => r.lv_name === this.record.thinpool);
    if (!pool) return {};
    const size = Number(pool.lv_size);
    return { sizeBytes: size, usedBytes: Math.round((size * Number(pool.data_percent || 0)) / 100) };
  }

  /** After a reboot: mount every volume that is not. */
  async mountAll(): Promise<void> {
    for (const vol of await this.listVolumes()) {
      if (!isMountpoint(this.volumePath(vol))) mount(this.dev(volumeLv(vol)), this.volumePath(vol), VOLUME_MOUNT);
    }
    // Mountpoints of volumes that are gone (deleted while tsvz was killed).
    for (const e of visibleEntries(path.join(this.record.dir, 'volumes'))) {
      const dir = path.join(this.record.dir, 'volumes', e);
      if (!isMountpoint(dir) && !lvExists(this.vg, volumeLv(e))) fs.rmdirSync(dir);
    }
  }

  /** A writable, active thin snapshot `name` of `origin`; undo removes it. */
  private activeSnapshotOf(origin: string, name: string, undo: UndoStack): string {
    lvm('lvcreate', ['-qq', '-y', '-s', '-kn', '-n', name, `${this.vg}/${origin}`]);
    undo.add(`lvremove ${name}`, () => this.remove(name));
    lvm('lvchange', ['-qq', '-ay', `${this.vg}/${name}`]);
    return name;
  }

  private rename(from: string, to: string, undo: UndoStack): void {
    lvm('lvrename', ['-qq', this.vg, from, to]);
    undo.add(`rename ${to} back`, () => void lvm('lvrename', ['-qq', this.vg, to, from]));
  }

  private remove(lv: string): void {
    lvm('lvremove', ['-qq', '-f', `${this.vg}/${lv}`]);
  }

  /**
   * Run `fn` (an lvcreate -s) with the volume's filesystem consistent: LVM
   * suspends the origin with lockfs, which freezes it. An fsfreeze of our own
   * would make that suspend fail with EBUSY on kernels before 6.6.
   */
  private frozen<T>(_vol: string, fn: () => T): T {
    return fn();
  }

  private existingVolume(vol: string): string {
    if (!lvExists(this.vg, volumeLv(validateVolumeName(vol)))) throw new NotFoundError(`volume ${vol} not found in pool ${this.record.name}`);
    return volumeLv(vol);
  }

  private existingSnapshot(vol: string, snap: string): string {
    this.existingVolume(vol);
    const lv = snapshotLv(vol, validateSnapshotName(snap));
    if (!lvExists(this.vg, lv)) throw new NotFoundError(`snapshot ${vol}@${snap} not found`, `see the volume's snapshots`);
    return lv;
  }
}

/** lvs prints "2024-05-01 10:00:00 +0000". */
function lvTime(text: string): string | undefined {
  const d = new Date(text.replace(' ', 'T').replace(' ', ''));
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export const lvmDriver = new LvmDriver();
