import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { AlreadyExistsError, CommandError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../lib/errors';
import { pollUntil } from '../lib/poll';
import { commandLine, findCommand, run, RunOptions, RunResult, runOutput } from '../lib/process';
import { withUndo } from '../lib/undo';
import type { UndoStack } from '../lib/undo';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendOptions, SnapshotInfo, StorageDriver } from './driver';
import { dependentClones, StorageError, storageFailure } from './errors';
import { createImage, isMountpoint, mountFsType } from './loop';
import { packTree } from '../archive/tree-tar';
import { FULL_STREAM_HINT, openForDestroy, requireNoSnapshot, requireNoVolume, requireSnapshot, requireVolume, snapshotExists } from './presence';
import { checkReceive, checkSendOptions, endingAfter, holdInput, receiveTar, sharedRun } from './transfer';
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

function zfs(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('zfs', args, { timeoutMs: ZFS_TIMEOUT_MS, ...opts });
}

function zpool(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('zpool', args, { timeoutMs: ZFS_TIMEOUT_MS, ...opts });
}

/**
 * The host's zpools, or why zfs can't be used right now (daemon down, module
 * not loaded). One command answers both, and a pool open needs both.
 */
async function listZpools(): Promise<{ pools: string[] } | { why: string }> {
  // zpool aborts at once when zfs-fuse is not running; the timeout covers a hung daemon.
  const r = await zpool(['list', '-H', '-o', 'name'], { allowFail: true, timeoutMs: 15_000 });
  if (r.status === 0) return { pools: r.stdout.split('\n').filter(Boolean) };
  const why = r.stderr.trim().split('\n').filter(Boolean)[0] ?? (r.status === null ? 'zpool was killed' : `exit ${r.status}`);
  return { why: `zfs is not answering (${why}): start the zfs-fuse daemon (scripts/setup-host) or load the zfs kernel module` };
}

async function exists(name: string): Promise<boolean> {
  return (await zfs(['list', '-H', '-o', 'name', name], { allowFail: true })).status === 0;
}

async function zpoolExists(name: string): Promise<boolean> {
  return (await zpool(['list', '-H', '-o', 'name', name], { allowFail: true })).status === 0;
}

/**
 * `zfs destroy` / `zpool destroy`, retried while "busy": zfs-fuse (and kernel
 * ZFS under load) report busy for a moment after the unmount they do first.
 */
async function destroy(name: string, recursive = false): Promise<void> {
  await whileBusy('zfs', ['destroy', ...(recursive ? ['-r'] : []), name], async () => !(await exists(name)));
}

async function destroyZpool(name: string): Promise<void> {
  await whileBusy('zpool', ['destroy', '-f', name], async () => !(await zpoolExists(name)));
}

async function whileBusy(cmd: 'zfs' | 'zpool', args: string[], gone: () => Promise<boolean>): Promise<void> {
  let last: RunResult | undefined;
  const done = await pollUntil(async () => {
    const r = await run(cmd, args, { allowFail: true, timeoutMs: ZFS_TIMEOUT_MS });
    if (r.status === 0 || (await gone())) return true;
    if (!/busy/i.test(r.stderr)) throw new CommandError(commandLine(cmd, args), r.status, r.stderr);
    last = r;
    return false;
  }, { timeoutMs: BUSY_RETRY_MS, firstMs: 50, maxMs: 500, factor: 2 });
  if (!done) throw new CommandError(commandLine(cmd, args), last!.status, last!.stderr);
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

  async missing(): Promise<string[]> {
    if (!findCommand('zfs') || !findCommand('zpool')) return ['zfs tools not installed (zfsutils-linux, or zfs-fuse)'];
    const zpools = await listZpools();
    return 'why' in zpools ? [zpools.why] : [];
  }

  async createPool(spec: PoolSpec): Promise<ZfsPoolRecord> {
    validatePoolSpec(spec, MIN_SIZE);
    await requireUsable(this);
    if (spec.source !== undefined) return this.adopt(spec);
    if (spec.size === undefined) {
      throw new InvalidArgumentError('a zfs pool needs --source (an existing dataset, e.g. tank/tsvz) or --size (a file-backed zpool under the root)');
    }
    if (await zpoolExists(spec.name)) throw new AlreadyExistsError(`a zpool named ${spec.name} already exists on this host`, 'pick another pool name, or use --source with a dataset in it');
    const dir = claimPoolDir(spec);
    const image = path.join(dir, 'zpool.img');
    const size = spec.size;
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      createImage(image, size, undo);
      await zpool(['create', '-m', 'none', spec.name, image]);
      undo.add(`destroy zpool ${spec.name}`, () => destroyZpool(spec.name));
      await makeLayout(spec.name, dir, undo);
      return { name: spec.name, driver: 'zfs', dataset: spec.name, dir, zpool: spec.name, image };
    });
  }

  /** --source: an existing filesystem dataset; we add two children and never touch its own properties. */
  private async adopt(spec: PoolSpec): Promise<ZfsPoolRecord> {
    const source = spec.source!;
    if (source.startsWith('/')) throw new InvalidArgumentError(`zfs pool source ${source} is a path`, 'give a dataset name, e.g. tank/tsvz');
    const r = await zfs(['list', '-H', '-o', 'type', source], { allowFail: true });
    if (r.status !== 0) throw new NotFoundError(`zfs dataset ${source} does not exist`, `create it (zfs create ${source}) or use --size`);
    const type = r.stdout.trim();
    if (type !== 'filesystem') throw new InvalidArgumentError(`zfs pool source ${source} is a ${type}, not a filesystem dataset`);
    if ((await exists(`${source}/volumes`)) || (await exists(`${source}/tmp`))) {
      throw new AlreadyExistsError(`zfs dataset ${source} already holds a tsvz pool (${source}/volumes exists)`);
    }
    const dir = claimPoolDir(spec);
    return withUndo(async (undo) => {
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.add(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
      await makeLayout(source, dir, undo);
      return { name: spec.name, driver: 'zfs', dataset: source, dir };
    });
  }

  async openPool(record: PoolRecord): Promise<ZfsPool> {
    // Every command here costs milliseconds (zfs-fuse: several): an open runs two.
    const rec = record as ZfsPoolRecord;
    const zpools = await listZpools();
    if ('why' in zpools) throw new NotSupportedError(`cannot open pool ${rec.name}: ${zpools.why}`);
    if (rec.zpool && !zpools.pools.includes(rec.zpool)) {
      if (!rec.image || !fs.existsSync(rec.image)) throw new NotFoundError(`pool ${rec.name}: zpool ${rec.zpool} and its image are gone`);
      await zpool(['import', '-d', path.dirname(rec.image), rec.zpool]); // after a reboot
    }
    const pool = new ZfsPool(rec, this);
    await pool.mountAll();
    return pool;
  }

  async destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
    const rec = record as ZfsPoolRecord;
    const { pool, volumes } = await openForDestroy(this, rec, opts.force);
    if (rec.zpool) {
      await destroyZpool(rec.zpool);
    } else {
      // One at a time: deleting a volume can promote a clone, which moves snapshots between the others.
      for (const vol of volumes) if (await exists(`${rec.dataset}/volumes/${vol}`)) await pool.deleteVolume(vol);
      await destroy(`${rec.dataset}/tmp`, true);
      await destroy(`${rec.dataset}/volumes`, true);
    }
    await removeTree(rec.dir);
  }

  /** A --size zpool made on the home's image; the two datasets made in a --source (their mountpoints prove them ours). */
  async abandon(spec: PoolSpec, home: string): Promise<void> {
    if (spec.source === undefined) {
      if (!(await zpoolExists(spec.name))) return;
      const status = await zpool(['status', '-P', spec.name], { allowFail: true });
      if (status.stdout.includes(path.join(home, 'zpool.img'))) await destroyZpool(spec.name);
      return;
    }
    for (const child of ['tmp', 'volumes']) {
      const ds = `${spec.source}/${child}`;
      const r = await zfs(['get', '-H', '-o', 'value', 'mountpoint', ds], { allowFail: true });
      if (r.status === 0 && r.stdout.trim() === path.join(home, child)) await destroy(ds);
    }
  }

  describeSource(record: PoolRecord): string {
    const rec = record as ZfsPoolRecord;
    return rec.image ? `${rec.dataset} (${rec.image})` : String(rec.dataset);
  }
}

async function makeLayout(base: string, dir: string, undo: UndoStack): Promise<void> {
  // atime off: reading a volume must not count as a change (`zfs recv` of an incremental refuses those).
  await zfs(['create', '-o', `mountpoint=${path.join(dir, 'volumes')}`, '-o', 'atime=off', `${base}/volumes`]);
  undo.add(`destroy ${base}/volumes`, () => destroy(`${base}/volumes`, true));
  await zfs(['create', '-o', `mountpoint=${path.join(dir, 'tmp')}`, '-o', 'atime=off', `${base}/tmp`]);
  undo.add(`destroy ${base}/tmp`, () => destroy(`${base}/tmp`, true));
}

class ZfsPool implements Pool {
  /** Volume datasets seen when the pool was opened or made since: existence checks need no command. */
  private seen = new Set<string>();

  constructor(readonly record: ZfsPoolRecord, readonly driver: ZfsDriver) {}

  private get volumes(): string { return `${this.record.dataset}/volumes`; }
  private dataset(vol: string): string { return `${this.volumes}/${validateVolumeName(vol)}`; }

  volumePath(vol: string): string {
    return path.join(this.record.dir, 'volumes', validateVolumeName(vol));
  }

  snapshotHandle(vol: string, snap: string): string {
    return `${this.dataset(vol)}@${validateSnapshotName(snap)}`;
  }

  async hasVolume(vol: string): Promise<boolean> {
    const ds = this.dataset(vol);
    // Seen at open: the caller holds the volume's container lock, so it is still there.
    return this.seen.has(ds) || exists(ds);
  }

  async hasSnapshot(vol: string, snap: string): Promise<boolean> {
    return exists(this.snapshotHandle(vol, snap));
  }

  async listVolumes(): Promise<string[]> {
    return (await this.childDatasets(this.volumes)).map((ds) => ds.slice(this.volumes.length + 1)).sort();
  }

  async createVolume(vol: string): Promise<string> {
    const ds = this.dataset(vol);
    await requireNoVolume(this, vol);
    try {
      await zfs(['create', ds]);
      await this.ensureMounted(ds);
    } catch (err) {
      if (await exists(ds)) await destroy(ds, true);
      throw storageFailure(`create volume ${vol}`, this.record.name, err);
    }
    this.seen.add(ds);
    return this.volumePath(vol);
  }

  async deleteVolume(vol: string): Promise<void> {
    await requireVolume(this, vol);
    const ds = this.dataset(vol);
    try {
      const origin = (await this.origins()).get(ds);
      const heirs = await this.handOverSnapshots(ds);
      await destroy(ds, true);
      this.seen.delete(ds);
      for (const heir of heirs) await this.dropUnneededHidden(heir);
      if (origin && isHidden(origin)) await this.dropIfUnneeded(origin);
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
      const snaps = await this.snapshotNames(ds);
      const origins = await this.origins();
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
          await zfs(['rename', `${ds}@${snap}`, `${ds}@${hidden}`]);
          undo.add(`rename ${hidden} back`, async () => { await zfs(['rename', `${ds}@${hidden}`, `${ds}@${snap}`]); });
        }
        await zfs(['promote', heir]);
      });
      heirs.push(heir);
    }
  }

  async snapshot(vol: string, snap: string): Promise<SnapshotInfo> {
    await requireVolume(this, vol);
    const full = this.snapshotHandle(vol, snap);
    const createdAt = new Date().toISOString();
    try {
      await zfs(['snapshot', full]);
    } catch (err) {
      // Asked only on failure: the usual snapshot runs one command.
      if (await exists(full)) throw snapshotExists(vol, snap);
      throw storageFailure(`snapshot ${vol}@${snap}`, this.record.name, err);
    }
    // A new snapshot holds no space of its own yet; listSnapshots asks zfs for sizes.
    return { name: snap, createdAt };
  }

  async listSnapshots(vol: string): Promise<SnapshotInfo[]> {
    await requireVolume(this, vol);
    const ds = this.dataset(vol);
    return this.infos(ds, (await this.snapshotNames(ds)).filter((s) => !isHidden(s)));
  }

  async deleteSnapshot(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const full = this.snapshotHandle(vol, snap);
    const clones = [...(await this.origins())].filter(([, origin]) => origin === full).map(([clone]) => clone);
    if (clones.length > 0) throw dependentClones(vol, snap, clones.map((c) => this.describe(c)));
    try {
      await destroy(full);
    } catch (err) {
      throw storageFailure(`delete snapshot ${vol}@${snap}`, this.record.name, err);
    }
  }

  async rollback(vol: string, snap: string): Promise<void> {
    await requireSnapshot(this, vol, snap);
    const full = this.snapshotHandle(vol, snap);
    const ds = this.dataset(vol);
    const snaps = await this.snapshotNames(ds);
    const newer = snaps.slice(snaps.indexOf(snap) + 1);
    if (newer.length > 0) {
      // `zfs rollback -r` would destroy them (and -R their clones): never implicitly.
      const visible = newer.filter((s) => !isHidden(s));
      const clones = [...(await this.origins())].filter(([, o]) => newer.some((s) => o === `${ds}@${s}`)).map(([c]) => this.describe(c));
      throw new StorageError(
        `cannot roll back ${vol} to ${snap}: zfs only rolls back to the newest snapshot, and ${vol} has newer ` +
          [visible.length > 0 && `snapshots (${visible.join(', ')})`, clones.length > 0 && `clones (${clones.join(', ')})`].filter(Boolean).join(' and '),
        { code: 'EDEPENDENT', hint: 'delete what is newer first' },
      );
    }
    try {
      await zfs(['rollback', full]);
      await this.ensureMounted(ds);
    } catch (err) {
      throw storageFailure(`roll back ${vol} to ${snap}`, this.record.name, err);
    }
  }

  async clone(src: string, snap: string | undefined, dst: string): Promise<string> {
    if (snap === undefined) await requireVolume(this, src);
    else await requireSnapshot(this, src, snap);
    const ds = this.dataset(src);
    const target = this.dataset(dst);
    await requireNoVolume(this, dst);
    try {
      await withUndo(async (undo) => {
        let origin = `${ds}@${snap}`;
        if (snap === undefined) {
          // Clones need a snapshot; this one lives (hidden) as long as the clone.
          origin = `${ds}@${HIDDEN}clone-${dst}-${randomTag()}`;
          await zfs(['snapshot', origin]);
          undo.add(`destroy ${origin}`, () => destroy(origin));
        }
        await zfs(['clone', origin, target]);
        undo.add(`destroy ${target}`, () => destroy(target, true));
        await this.ensureMounted(target);
      });
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.record.name, err);
    }
    this.seen.add(target);
    return this.volumePath(dst);
  }

  async send(vol: string, snap: string, opts: SendOptions): Promise<Readable> {
    checkSendOptions(this.driver, opts);
    await requireSnapshot(this, vol, snap);
    const full = this.snapshotHandle(vol, snap);
    if (opts.format === 'zfs') {
      if (opts.parent !== undefined) await requireSnapshot(this, vol, opts.parent);
      return runOutput('zfs', ['send', ...(opts.parent !== undefined ? ['-i', `@${opts.parent}`] : []), full], { dieWithParent: true });
    }
    // tar: read the snapshot through a short-lived read-only clone (zfs-fuse has no .zfs/snapshot).
    const tmp = `${this.record.dataset}/tmp/send-${process.pid}-${randomTag()}`;
    try {
      await zfs(['clone', '-o', 'readonly=on', full, tmp]);
      await this.ensureMounted(tmp);
    } catch (err) {
      if (await exists(tmp)) await destroy(tmp);
      throw storageFailure(`send ${vol}@${snap}`, this.record.name, err);
    }
    const release = sharedRun(async () => {
      if (await exists(tmp)) await destroy(tmp);
    });
    return endingAfter(packTree(path.join(this.record.dir, 'tmp', path.basename(tmp)), { onClose: release }), release);
  }

  async receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void> {
    const readable = holdInput(input);
    checkReceive(this.driver, vol, snap, opts);
    const ds = this.dataset(vol);
    if (opts.format === 'tar') return receiveTar(this, vol, snap, input);
    try {
      if (opts.parent === undefined) await requireNoVolume(this, vol, FULL_STREAM_HINT);
      else await requireSnapshot(this, vol, opts.parent);
      await requireNoSnapshot(this, vol, snap);
      await withUndo(async (undo) => {
        if (opts.parent === undefined) undo.add(`destroy ${ds}`, () => destroy(ds, true));
        // -F: discard changes made since the parent, as the other drivers' receive does.
        readable();
        await run('zfs', ['recv', ...(opts.parent !== undefined ? ['-F'] : []), `${ds}@${snap}`], { input, dieWithParent: true });
        if (opts.parent !== undefined) await this.dropFuseCaches(ds);
        await this.ensureMounted(ds);
      });
    } catch (err) {
      input.destroy();
      throw storageFailure(`receive ${vol}@${snap}`, this.record.name, err);
    }
    this.seen.add(ds);
  }

  async usage(): Promise<PoolUsage> {
    const out = (await zfs(['get', '-Hp', '-o', 'value', 'used,available', this.record.dataset])).stdout;
    const [used, available] = out.trim().split('\n').map(Number);
    return { sizeBytes: used + available, usedBytes: used };
  }

  /** After an import (reboot) or a daemon restart, volumes may be unmounted. Remembers which volumes exist. */
  async mountAll(): Promise<void> {
    const r = await zfs(['list', '-H', '-o', 'name,mounted', '-r', '-t', 'filesystem', this.volumes], { allowFail: true });
    if (r.status !== 0) {
      if (!(await exists(this.volumes))) throw new NotFoundError(`pool ${this.record.name}: dataset ${this.volumes} does not exist`);
      throw new CommandError(commandLine('zfs', ['list', this.volumes]), r.status, r.stderr);
    }
    for (const line of r.stdout.trim().split('\n')) {
      const [name, mounted] = line.split('\t');
      if (name === this.volumes || !name) continue;
      if (mounted === 'no') await zfs(['mount', name]);
      this.seen.add(name);
    }
  }

  /**
   * zfs-fuse: after an incremental receive the kernel's FUSE caches still
   * show the old sizes and contents; a remount drops them. (Kernel ZFS
   * mounts are not FUSE and need nothing.)
   */
  private async dropFuseCaches(ds: string): Promise<void> {
    const mountpoint = (await zfs(['get', '-H', '-o', 'value', 'mountpoint', ds])).stdout.trim();
    if (!mountFsType(mountpoint)?.startsWith('fuse')) return;
    await zfs(['umount', ds]);
    await zfs(['mount', ds]);
  }

  private async ensureMounted(ds: string): Promise<void> {
    const mountpoint = (await zfs(['get', '-H', '-o', 'value', 'mountpoint', ds])).stdout.trim();
    if (!isMountpoint(mountpoint)) await zfs(['mount', ds], { allowFail: true });
    if (!isMountpoint(mountpoint)) throw new StorageError(`dataset ${ds} is not mounted at ${mountpoint}`);
  }

  private async childDatasets(parent: string): Promise<string[]> {
    const out = (await zfs(['list', '-H', '-o', 'name', '-d', '1', '-t', 'filesystem', parent])).stdout;
    return out.split('\n').filter((l) => l && l !== parent);
  }

  /** Snapshot names (after "@") of a dataset, oldest first (zfs lists them in creation order). */
  private async snapshotNames(ds: string): Promise<string[]> {
    const out = (await zfs(['list', '-H', '-o', 'name', '-t', 'snapshot', '-d', '1', ds])).stdout;
    return out.split('\n').filter(Boolean).map((l) => l.slice(ds.length + 1));
  }

  /** clone dataset -> its origin snapshot, for every clone in the pool. */
  private async origins(): Promise<Map<string, string>> {
    const out = (await zfs(['list', '-H', '-o', 'name,origin', '-r', '-t', 'filesystem', this.record.dataset])).stdout;
    const result = new Map<string, string>();
    for (const line of out.split('\n')) {
      const [name, origin] = line.split('\t');
      if (origin && origin !== '-') result.set(name, origin);
    }
    return result;
  }

  /** Destroy the hidden snapshots of `ds` that no clone needs any more. */
  private async dropUnneededHidden(ds: string): Promise<void> {
    for (const snap of (await this.snapshotNames(ds)).filter(isHidden)) await this.dropIfUnneeded(`${ds}@${snap}`);
  }

  private async dropIfUnneeded(full: string): Promise<void> {
    if (![...(await this.origins()).values()].includes(full) && (await exists(full))) await destroy(full);
  }

  private async infos(ds: string, snaps: string[]): Promise<SnapshotInfo[]> {
    if (snaps.length === 0) return [];
    const props = new Map<string, Record<string, string>>();
    const out = (await zfs(['get', '-Hp', '-o', 'name,property,value', 'creation,used,referenced', ...snaps.map((s) => `${ds}@${s}`)])).stdout;
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
}

export const zfsDriver = new ZfsDriver();
