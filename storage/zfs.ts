import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { AlreadyExistsError, CommandError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../lib/errors';
import { commandLine, findCommand } from '../lib/process';
// TODO(async storage): the retry below still sleeps synchronously.
function sleepSync(ms: number): void { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); }
import { withUndo } from '../lib/undo';
import type { UndoStack } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, StorageError, storageFailure } from './errors';
import { createImage, isMountpoint, mountFsType } from './loop';
import { packTree } from '../archive/tree-tar';
import { tool, toolAsync, ToolOptions, toolOutput } from './tool';
import { checkReceive, checkSendOptions, receiveTar } from './transfer';
import { removeTree } from './tree';
import { claimPoolDir, requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from './validate';

/**
 * The zfs driver: a dataset per volume, zfs snapshot / rollback / clone,
 * `zfs send -i` for incrementals. Only commands and options that kernel ZFS
 * and zfs-fuse share are used (no `zfs list -p`, no .zfs/snapshot access).
 *
 *   <base>/volumes/<vol>   mounted at <rootDir>/pools/<name>/volumes/<vol>
 *   <base>/tmp/...         short-lived read-only clones (tar sends)
 *
 * <base> is the --source dataset, or a file-backed zpool made with --size.
 *
 * Hidden snapshots: names containing ":" (never a valid user name) are ours:
 * the origin of a clone of a volume's current state, and snapshots a
 * promoted clone inherits from a deleted origin. They are not listed and are
 * destroyed as soon as no clone needs them.
 */

export interface ZfsPoolRecord extends PoolRecord {
  driver: 'zfs';
  /** The dataset holding the pool's datasets. */
  dataset: string;
  /** <rootDir>/pools/<name>: mountpoints of volumes and temporaries (and the zpool image). */
  dir: string;
  /** --size pools: the zpool we created and its file vdev. */
  zpool?: string;
  image?: string;
}

const MIN_SIZE = 64 * 1024 ** 2; // SPA_MINDEVSIZE
const HIDDEN = 'tsvz:';
/** Metadata commands answer in milliseconds; a minute means the daemon or module is stuck. */
const ZFS_TIMEOUT_MS = 60_000;
const BUSY_RETRY_MS = 10_000;

function zfs(args: string[], opts: ToolOptions = {}) {
  return tool('zfs', args, { timeoutMs: ZFS_TIMEOUT_MS, ...opts });
}

function zpool(args: string[], opts: ToolOptions = {}) {
  return tool('zpool', args, { timeoutMs: ZFS_TIMEOUT_MS, ...opts });
}

/**
 * The host's zpools, or why zfs can't be used right now (daemon down, module
 * not loaded). One command answers both, and a pool open needs both.
 */
function listZpools(): { pools: string[] } | { why: string } {
  // zpool aborts at once when zfs-fuse is not running; the timeout covers a hung daemon.
  const r = zpool(['list', '-H', '-o', 'name'], { allowFail: true, timeoutMs: 15_000 });
  if (r.status === 0) return { pools: r.stdout.split('\n').filter(Boolean) };
  const why = r.stderr.trim().split('\n').filter(Boolean)[0] ?? (r.status === null ? 'zpool was killed' : `exit ${r.status}`);
  return { why: `zfs is not answering (${why}): start the zfs-fuse daemon (scripts/setup-host) or load the zfs kernel module` };
}

function exists(name: string): boolean {
  return zfs(['list', '-H', '-o', 'name', name], { allowFail: true }).status === 0;
}

function zpoolExists(name: string): boolean {
  return zpool(['list', '-H', '-o', 'name', name], { allowFail: true }).status === 0;
}

/**
 * `zfs destroy` / `zpool destroy`, retried while "busy": zfs-fuse (and kernel
 * ZFS under load) report busy for a moment after the unmount they do first.
 */
function destroy(name: string, recursive = false): void {
  whileBusy('zfs', ['destroy', ...(recursive ? ['-r'] : []), name], () => !exists(name));
}

function destroyZpool(name: string): void {
  whileBusy('zpool', ['destroy', '-f', name], () => !zpoolExists(name));
}

function whileBusy(cmd: 'zfs' | 'zpool', args: string[], gone: () => boolean): void {
  const deadline = Date.now() + BUSY_RETRY_MS;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    const r = tool(cmd, args, { allowFail: true, timeoutMs: ZFS_TIMEOUT_MS });
    if (r.status === 0 || gone()) return;
    if (!/busy/i.test(r.stderr) || Date.now() > deadline) throw new CommandError(commandLine(cmd, args), r.status, r.stderr);
    sleepSync(delay);
  }
}

function isHidden(snapshotName: string): boolean {
  return snapshotName.includes(':');
}

function randomTag(): string {
  return crypto.randomBytes(4).toString('hex');
}

class ZfsDriver implements StorageDriver {
  readonly name = 'zfs';
  readonly capabilities: DriverCapabilities = { atomicSnapshot: true, cowClone: true, incrementalSend: true, rollbackToAny: false, sendFormats: ['zfs', 'tar'] };

  missing(): string[] {
    if (!findCommand('zfs') || !findCommand('zpool')) return ['zfs tools not installed (zfsutils-linux, or zfs-fuse)'];
    const zpools = listZpools();
    return 'why' in zpools ? [zpools.why] : [];
  }

  async createPool(spec: PoolSpec): Promise<ZfsPoolRecord> {
    validatePoolSpec(spec, MIN_SIZE);
    requireUsable(this);
    if (spec.source !== undefined) return this.adopt(spec);
    if (spec.size === undefined) {
      throw new InvalidArgumentError('a zfs pool needs --source (an existing dataset, e.g. tank/tsvz) or --size (a file-backed zpool under the root)');
    }
    if (zpoolExists(spec.name)) throw new AlreadyExistsError(`a zpool named ${spec.name} already exists on this host`, 'pick another pool name, or use --source with a dataset in it');
    const dir = claimPoolDir(spec);
    const image = path.join(dir, 'zpool.img');
    const size = spec.size;
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      createImage(image, size, undo);
      zpool(['create', '-m', 'none', spec.name, image]);
      undo.add(`destroy zpool ${spec.name}`, () => destroyZpool(spec.name));
      makeLayout(spec.name, dir, undo);
      return { name: spec.name, driver: 'zfs', dataset: spec.name, dir, zpool: spec.name, image };
    });
  }

  /** --source: an existing filesystem dataset; we add two children and never touch its own properties. */
  private async adopt(spec: PoolSpec): Promise<ZfsPoolRecord> {
    const source = spec.source!;
    if (source.startsWith('/')) throw new InvalidArgumentError(`zfs pool source ${source} is a path`, 'give a dataset name, e.g. tank/tsvz');
    const r = zfs(['list', '-H', '-o', 'type', source], { allowFail: true });
    if (r.status !== 0) throw new NotFoundError(`zfs dataset ${source} does not exist`, `create it (zfs create ${source}) or use --size`);
    const type = r.stdout.trim();
    if (type !== 'filesystem') throw new InvalidArgumentError(`zfs pool source ${source} is a ${type}, not a filesystem dataset`);
    if (exists(`${source}/volumes`) || exists(`${source}/tmp`)) {
      throw new AlreadyExistsError(`zfs dataset ${source} already holds a tsvz pool (${source}/volumes exists)`);
    }
    const dir = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      makeLayout(source, dir, undo);
      return { name: spec.name, driver: 'zfs', dataset: source, dir };
    });
  }

  async openPool(record: PoolRecord): Promise<ZfsPool> {
    // Every command here costs milliseconds (zfs-fuse: several): an open runs two.
    const rec = record as ZfsPoolRecord;
    const zpools = listZpools();
    if ('why' in zpools) throw new NotSupportedError(`cannot open pool ${rec.name}: ${zpools.why}`);
    if (rec.zpool && !zpools.pools.includes(rec.zpool)) {
      if (!rec.image || !fs.existsSync(rec.image)) throw new NotFoundError(`pool ${rec.name}: zpool ${rec.zpool} and its image are gone`);
      zpool(['import', '-d', path.dirname(rec.image), rec.zpool]); // after a reboot
    }
    const pool = new ZfsPool(rec, this);
    pool.mountAll();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as ZfsPoolRecord;
    const pool = await this.openPool(rec);
    const vols = await pool.listVolumes();
    if (vols.length > 0 && !opts.force) {
      throw new StorageError(`pool ${rec.name} still has volumes: ${vols.join(', ')}`, { code: 'ENOTEMPTY', hint: 'delete them first, or force' });
    }
    if (rec.zpool) {
      destroyZpool(rec.zpool);
    } else {
      for (const vol of vols) if (exists(`${rec.dataset}/volumes/${vol}`)) await pool.deleteVolume(vol);
      destroy(`${rec.dataset}/tmp`, true);
      destroy(`${rec.dataset}/volumes`, true);
    }
    removeTree(rec.dir);
  }
}

function makeLayout(base: string, dir: string, undo: UndoStack): void {
  // atime off: reading a volume must not count as a change (`zfs recv` of an incremental refuses those).
  zfs(['create', '-o', `mountpoint=${path.join(dir, 'volumes')}`, '-o', 'atime=off', `${base}/volumes`]);
  undo.add(`destroy ${base}/volumes`, () => destroy(`${base}/volumes`, true));
  zfs(['create', '-o', `mountpoint=${path.join(dir, 'tmp')}`, '-o', 'atime=off', `${base}/tmp`]);
  undo.add(`destroy ${base}/tmp`, () => destroy(`${base}/tmp`, true));
}

class ZfsPool implements Pool {
  /** Volume datasets seen by mountAll when the pool was opened: existence checks need no command. */
  private seen = new Set<string>();

  constructor(readonly record: ZfsPoolRecord, readonly driver: ZfsDriver) {}

  private get volumes(): string { return `${this.record.dataset}/volumes`; }
  private dataset(vol: string): string { return `${this.volumes}/${validateVolumeName(vol)}`; }

  volumePath(vol: string): string {
    return path.join(this.record.dir, 'volumes', validateVolumeName(vol));
  }

  async listVolumes(): Promise<string[]> {
    return this.childDatasets(this.volumes).map((ds) => ds.slice(this.volumes.length + 1)).sort();
  }

  async createVolume(vol: string): Promise<string> {
    const ds = this.dataset(vol);
    if (exists(ds)) throw new AlreadyExistsError(`volume ${vol} already exists in pool ${this.record.name}`);
    try {
      zfs(['create', ds]);
      this.ensureMounted(ds);
    } catch (err) {
      if (exists(ds)) destroy(ds, true);
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    return this.volumePath(vol);
  }

  async deleteVolume(vol: string): Promise<void> {
    const ds = this.existingVolume(vol);
    try {
      const origin = this.origins().get(ds);
      const heirs = await this.handOverSnapshots(ds);
      destroy(ds, true);
      this.seen.delete(ds);
      for (const heir of heirs) this.dropUnneededHidden(heir);
      if (origin && isHidden(origin)) this.dropIfUnneeded(origin);
    } catch (err) {
      throw storageFailure(`delete volume ${vol}`, this.record.name, err);
    }
  }

  /**
   * Clones of this dataset's snapshots must outlive it: promote them (zfs
   * moves the snapshots up to the clone's origin over to the clone). The
   * moved snapshots are renamed hidden first so they neither clash with the
   * clone's own names nor show up as its snapshots. Returns the promoted clones.
   */
  private async handOverSnapshots(ds: string): Promise<string[]> {
    const heirs: string[] = [];
    for (;;) {
      const snaps = this.snapshotNames(ds);
      const origins = this.origins();
      const dependents = [...origins].filter(([, origin]) => snaps.includes(origin.slice(ds.length + 1)) && origin.startsWith(`${ds}@`));
      if (dependents.length === 0) return heirs;
      if (dependents.some(([clone]) => clone.startsWith(`${this.record.dataset}/tmp/`))) {
        throw new StorageError(`a send from ${ds} is in progress`, { code: 'EBUSY', hint: 'retry when it has finished' });
      }
      const index = (origin: string) => snaps.indexOf(origin.slice(ds.length + 1));
      const [heir, origin] = dependents.reduce((a, b) => (index(b[1]) > index(a[1]) ? b : a));
      await withUndo(async (undo) => {
        for (const snap of snaps.slice(0, index(origin) + 1).filter((s) => !isHidden(s))) {
          const hidden = `${HIDDEN}from-${randomTag()}-${snap}`;
          zfs(['rename', `${ds}@${snap}`, `${ds}@${hidden}`]);
          undo.add(`rename ${hidden} back`, () => void zfs(['rename', `${ds}@${hidden}`, `${ds}@${snap}`]));
        }
        zfs(['promote', heir]);
      });
      heirs.push(heir);
    }
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    const ds = this.existingVolume(vol);
    validateSnapshotName(snap);
    const createdAt = new Date().toISOString();
    try {
      zfs(['snapshot', `${ds}@${snap}`]);
    } catch (err) {
      // Asked only on failure: the usual snapshot runs one command.
      if (exists(`${ds}@${snap}`)) throw new AlreadyExistsError(`snapshot ${vol}@${snap} already exists`);
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    // A new snapshot holds no space of its own yet; listSnapshots asks zfs for sizes.
    return { name: snap, createdAt };
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    const ds = this.existingVolume(vol);
    return this.infos(ds, this.snapshotNames(ds).filter((s) => !isHidden(s)));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    const full = this.existingSnapshot(vol, snap);
    const clones = [...this.origins()].filter(([, origin]) => origin === full).map(([clone]) => clone);
    if (clones.length > 0) throw dependentClones(vol, snap, clones.map((c) => this.describe(c)));
    try {
      destroy(full);
    } catch (err) {
      throw storageFailure(`delete snapshot ${vol}@${snap}`, this.record.name, err);
    }
  }

  async rollback(vol: string, snap: string): Promise<void> {
    const full = this.existingSnapshot(vol, snap);
    const ds = this.dataset(vol);
    const snaps = this.snapshotNames(ds);
    const newer = snaps.slice(snaps.indexOf(snap) + 1);
    if (newer.length > 0) {
      // `zfs rollback -r` would destroy them (and -R their clones): never implicitly.
      const visible = newer.filter((s) => !isHidden(s));
      const clones = [...this.origins()].filter(([, o]) => newer.some((s) => o === `${ds}@${s}`)).map(([c]) => this.describe(c));
      throw new StorageError(
        `cannot roll back ${vol} to ${snap}: zfs only rolls back to the newest snapshot, and ${vol} has newer ` +
          [visible.length > 0 && `snapshots (${visible.join(', ')})`, clones.length > 0 && `clones (${clones.join(', ')})`].filter(Boolean).join(' and '),
        { code: 'EDEPENDENT', hint: 'delete what is newer first' },
      );
    }
    try {
      zfs(['rollback', full]);
      this.ensureMounted(ds);
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    const ds = this.existingVolume(src);
    if (snap !== undefined) this.existingSnapshot(src, snap);
    const target = this.dataset(dst);
    if (exists(target)) throw new AlreadyExistsError(`volume ${dst} already exists in pool ${this.record.name}`);
    try {
      await withUndo(async (undo) => {
        let origin = `${ds}@${snap}`;
        if (snap === undefined) {
          // Clones need a snapshot; this one lives (hidden) as long as the clone.
          origin = `${ds}@${HIDDEN}clone-${dst}-${randomTag()}`;
          zfs(['snapshot', origin]);
          undo.add(`destroy ${origin}`, () => destroy(origin));
        }
        zfs(['clone', origin, target]);
        undo.add(`destroy ${target}`, () => destroy(target, true));
        this.ensureMounted(target);
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    return this.volumePath(dst);
  }

  send(vol: string, snap: string, opts: SendOptions): Readable {
    checkSendOptions(this.driver, opts);
    const full = this.existingSnapshot(vol, snap);
    if (opts.format === 'zfs') {
      if (opts.parent !== undefined) this.existingSnapshot(vol, opts.parent);
      return toolOutput('zfs', ['send', ...(opts.parent !== undefined ? ['-i', `@${opts.parent}`] : []), full]);
    }
    // tar: read the snapshot through a short-lived read-only clone (zfs-fuse has no .zfs/snapshot).
    const tmp = `${this.record.dataset}/tmp/send-${process.pid}-${randomTag()}`;
    try {
      zfs(['clone', '-o', 'readonly=on', full, tmp]);
      this.ensureMounted(tmp);
    } catch (err) {
      if (exists(tmp)) destroy(tmp);
      throw storageFailure(`send ${vol}@${snap}`, this.record.name, err);
    }
    return packTree(path.join(this.record.dir, 'tmp', path.basename(tmp)), { onClose: () => destroy(tmp) });
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    checkReceive(this.driver, vol, snap, opts);
    const ds = this.dataset(vol);
    if (opts.format === 'tar') return receiveTar(this, vol, snap, input);
    try {
      if (opts.parent === undefined && exists(ds)) {
        throw new AlreadyExistsError(`volume ${vol} already exists in pool ${this.record.name}`, 'a full stream creates the volume: delete it first or receive under another name');
      }
      if (opts.parent !== undefined) this.existingSnapshot(vol, opts.parent);
      if (exists(`${ds}@${snap}`)) throw new AlreadyExistsError(`snapshot ${vol}@${snap} already exists`);
      await withUndo(async (undo) => {
        if (opts.parent === undefined) undo.add(`destroy ${ds}`, () => destroy(ds, true));
        // -F: discard changes made since the parent, as the other drivers' receive does.
        await toolAsync('zfs', ['recv', ...(opts.parent !== undefined ? ['-F'] : []), `${ds}@${snap}`], input);
        if (opts.parent !== undefined) this.dropFuseCaches(ds);
        this.ensureMounted(ds);
      });
    } catch (err) {
      input.destroy();
      throw storageFailure(`receive ${vol}@${snap}`, this.record.name, err);
    }
  }

  async usage(): Promise<PoolUsage> {
    const [used, available] = zfs(['get', '-Hp', '-o', 'value', 'used,available', this.record.dataset]).stdout.trim().split('\n').map(Number);
    return { sizeBytes: used + available, usedBytes: used };
  }

  /** After an import (reboot) or a daemon restart, volumes may be unmounted. Remembers which volumes exist. */
  mountAll(): void {
    const r = zfs(['list', '-H', '-o', 'name,mounted', '-r', '-t', 'filesystem', this.volumes], { allowFail: true });
    if (r.status !== 0) {
      if (!exists(this.volumes)) throw new NotFoundError(`pool ${this.record.name}: dataset ${this.volumes} does not exist`);
      throw new CommandError(commandLine('zfs', ['list', this.volumes]), r.status, r.stderr);
    }
    for (const line of r.stdout.trim().split('\n')) {
      const [name, mounted] = line.split('\t');
      if (name === this.volumes || !name) continue;
      if (mounted === 'no') zfs(['mount', name]);
      this.seen.add(name);
    }
  }

  /**
   * zfs-fuse: after an incremental receive the kernel's FUSE caches still
   * show the old sizes and contents; a remount drops them. (Kernel ZFS
   * mounts are not FUSE and need nothing.)
   */
  private dropFuseCaches(ds: string): void {
    const mountpoint = zfs(['get', '-H', '-o', 'value', 'mountpoint', ds]).stdout.trim();
    if (!mountFsType(mountpoint)?.startsWith('fuse')) return;
    zfs(['umount', ds]);
    zfs(['mount', ds]);
  }

  private ensureMounted(ds: string): void {
    const mountpoint = zfs(['get', '-H', '-o', 'value', 'mountpoint', ds]).stdout.trim();
    if (!isMountpoint(mountpoint)) zfs(['mount', ds], { allowFail: true });
    if (!isMountpoint(mountpoint)) throw new StorageError(`dataset ${ds} is not mounted at ${mountpoint}`);
  }

  private childDatasets(parent: string): string[] {
    const out = zfs(['list', '-H', '-o', 'name', '-d', '1', '-t', 'filesystem', parent]).stdout;
    return out.split('\n').filter((l) => l && l !== parent);
  }

  /** Snapshot names (after "@") of a dataset, oldest first (zfs lists them in creation order). */
  private snapshotNames(ds: string): string[] {
    const out = zfs(['list', '-H', '-o', 'name', '-t', 'snapshot', '-d', '1', ds]).stdout;
    return out.split('\n').filter(Boolean).map((l) => l.slice(ds.length + 1));
  }

  /** clone dataset -> its origin snapshot, for every clone in the pool. */
  private origins(): Map<string, string> {
    const out = zfs(['list', '-H', '-o', 'name,origin', '-r', '-t', 'filesystem', this.record.dataset]).stdout;
    const result = new Map<string, string>();
    for (const line of out.split('\n')) {
      const [name, origin] = line.split('\t');
      if (origin && origin !== '-') result.set(name, origin);
    }
    return result;
  }

  /** Destroy the hidden snapshots of `ds` that no clone needs any more. */
  private dropUnneededHidden(ds: string): void {
    for (const snap of this.snapshotNames(ds).filter(isHidden)) this.dropIfUnneeded(`${ds}@${snap}`);
  }

  private dropIfUnneeded(full: string): void {
    if (![...this.origins().values()].includes(full) && exists(full)) destroy(full);
  }

  private infos(ds: string, snaps: string[]): SnapshotInfo[] {
    if (snaps.length === 0) return [];
    const props = new Map<string, Record<string, string>>();
    const out = zfs(['get', '-Hp', '-o', 'name,property,value', 'creation,used,referenced', ...snaps.map((s) => `${ds}@${s}`)]).stdout;
    for (const line of out.split('\n').filter(Boolean)) {
      const [name, prop, value] = line.split('\t');
      props.set(name, { ...props.get(name), [prop]: value });
    }
    return snaps.map((s) => {
      const p = props.get(`${ds}@${s}`) ?? {};
      return {
        name: s,
        createdAt: p.creation ? new Date(Number(p.creation) * 1000).toISOString() : undefined,
        sizeBytes: p.used !== undefined ? Number(p.used) : undefined,
        referencedBytes: p.referenced !== undefined ? Number(p.referenced) : undefined,
      };
    });
  }

  /** A clone's name as the user knows it: the volume name, or the dataset for anything else. */
  private describe(clone: string): string {
    return clone.startsWith(`${this.volumes}/`) ? clone.slice(this.volumes.length + 1) : clone;
  }

  private existingVolume(vol: string): string {
    const ds = this.dataset(vol);
    // Seen at open: the caller holds the volume's container lock, so it is still there.
    if (!this.seen.has(ds) && !exists(ds)) throw new NotFoundError(`volume ${vol} not found in pool ${this.record.name}`);
    return ds;
  }

  private existingSnapshot(vol: string, snap: string): string {
    const full = `${this.existingVolume(vol)}@${validateSnapshotName(snap)}`;
    if (!exists(full)) throw new NotFoundError(`snapshot ${vol}@${snap} not found`, `see the volume's snapshots`);
    return full;
  }
}

export const zfsDriver = new ZfsDriver();
