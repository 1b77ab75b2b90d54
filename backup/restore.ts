import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { addCleanupFailures, CorruptDataError, InvalidArgumentError, InvalidStateError } from '../lib/errors';
import { validateName } from '../lib/names';
import { faultPoint } from '../lib/fault';
import type { Root } from '../lib/root';
import type { ContainerConfig } from '../runtime/config';
import { filesOwnerOf, shiftToOwnerOf } from '../runtime/rootfs-owner';
import { Container } from '../runtime/container';
import { Backups, BackupTrailer } from '../daemon/proto';
import { DEFAULT_POOL, validateSnapshotName, withStore } from '../storage';
import { BackupStore } from './store';
import { connectRemote } from './ship';

/**
 * A backup becomes a container again: from this host's backup store, or
 * fetched from a remote's (`--from`), as a new container (`--as`, default
 * the backup's own name) created from the backup's files and its config.
 * The stream is a full tar; a fetched one is checked against its sha256
 * before the create finishes, and a mismatch or a broken stream undoes the
 * create. Under a new name a bridged container comes back without its
 * address (the original may still hold it). Over a container that exists
 * (stopped, or `force`: stopped first and started again after), only its
 * files are replaced (restoreOver).
 */
export interface RestoreResult {
  name: string;
  snapshot: string;
  bytes: number;
  from: string;
  /** Over an existing container's files, not as a new one. */
  over: boolean;
  /** It runs now: a stateful backup's memory was restored (or a forced one was started again). */
  running: boolean;
}

export async function restoreBackup(root: Root, container: string, snapshot: string, opts: { from?: string; as?: string; pool?: string; force?: boolean } = {}): Promise<RestoreResult> {
  validateName(container);
  validateSnapshotName(snapshot);
  const name = validateName(opts.as ?? container);
  const pool = opts.pool ? validateName(opts.pool, 'pool') : DEFAULT_POOL;
  const existing = new Container(root, name);
  // Refused before anything is fetched: a running container is replaced only when asked.
  const over = existing.exists() ? await overWhat(Container.open(root, name), opts.force === true) : undefined;
  let configJson: string;
  let body: Readable;
  let close = () => undefined as void;
  /** The backup's memory as a checkpoint archive on disk (a stateful backup), fetched when asked. */
  let stateFile: (() => Promise<string>) | undefined;
  const scratch: string[] = [];
  if (opts.from) {
    const client = await connectRemote(root, opts.from);
    close = () => client.close();
    const it = client.serverStream(Backups.Fetch, { container, snapshot })[Symbol.asyncIterator]();
    const first = await it.next().catch((err: unknown) => { close(); throw err; });
    const h = first.done ? undefined : first.value.header;
    if (!h || h.format !== 'tar') { close(); throw new CorruptDataError(`${opts.from} sent no backup header`); }
    configJson = h.configJson ?? '';
    body = Readable.from(verified(it));
    if (h.stateful) {
      stateFile = async () => {
        const state = client.serverStream(Backups.FetchState, { container, snapshot })[Symbol.asyncIterator]();
        const head = await state.next();
        if (head.done || head.value.header?.format !== 'checkpoint') throw new CorruptDataError(`${opts.from} sent no header for the backup's memory`);
        fs.mkdirSync(root.cacheDir, { recursive: true, mode: 0o700 });
        const file = path.join(root.cacheDir, `backup-state-${crypto.randomBytes(6).toString('hex')}.tar`);
        scratch.push(file);
        await pipeline(Readable.from(verified(state)), fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }));
        return file;
      };
    }
  } else {
    const store = new BackupStore(root);
    const b = store.find(container, snapshot);
    configJson = b.configJson;
    body = await store.send(b, 'tar');
    if (b.state) stateFile = async () => store.stateFile(b);
  }
  /** A stateful backup comes back running: its memory imported (signed by the host that made it, which this one trusts) and restored. */
  const resume = stateFile ? async () => {
    const { restoreImported } = await import('../ops/import');
    const { archiveTrust } = await import('../daemon/signers');
    // Privileged only where the container is (import refuses a checkpoint whose kind differs from its container's).
    await restoreImported(root, name, await stateFile!(), { trust: archiveTrust(root), privileged: Container.open(root, name).config.idmap === undefined });
  } : undefined;
  try {
    const config = parseConfig(configJson);
    if (over) return { name, snapshot, bytes: await restoreOver(over.c, snapshot, config, body, over.wasRunning, resume), from: opts.from ?? 'local', over: true, running: resume !== undefined || over.wasRunning };
    const { createContainer, specLike } = await import('../ops/create');
    const { unpackTree } = await import('../archive/tree-tar');
    let bytes = 0;
    await createContainer(root, name, specLike(config, { pool, renamed: name !== config.name }), async (rootfs) => {
      bytes = (await unpackTree(body, fs.realpathSync(rootfs))).bytes;
      return filesOwnerOf(config.idmap, "the backup's config");
    });
    await resume?.();
    return { name, snapshot, bytes, from: opts.from ?? 'local', over: false, running: resume !== undefined };
  } finally {
    body.destroy();
    close();
    for (const f of scratch) fs.rmSync(f, { force: true });
  }
}

/** Whether `c` may have its files replaced, and whether it runs (`force`: it is stopped once the backup is at hand, and started again after). */
async function overWhat(c: Container, force: boolean): Promise<{ c: Container; wasRunning: boolean }> {
  const { lockContainer } = await import('../ops/recovery');
  const { reconcile } = await import('../runtime/release');
  const wasRunning = await lockContainer(c, async () => (await reconcile(c)).status === 'running');
  if (wasRunning && !force) throw new InvalidStateError(`container ${c.name} exists and is running`, 'stop it first, or --force stops it, restores its files over it and starts it again');
  return { c, wasRunning };
}

/**
 * The backup's files over stopped container `c`'s, under a journal: a
 * snapshot of its files first, then its rootfs emptied and the backup
 * unpacked into it; any failure, or a kill (the next command's recovery),
 * rolls the files back to that snapshot, and the snapshot goes once the
 * backup is in. Its config (address, limits) stays; checkpoints dumped
 * against the old files are retired. Returns the bytes unpacked.
 */
async function restoreOver(c: Container, snapshot: string, config: ContainerConfig, body: Readable, wasRunning: boolean, resume?: () => Promise<void>): Promise<number> {
  const { lockContainer, withContainerIntent } = await import('../ops/recovery');
  const { reconcile } = await import('../runtime/release');
  const { forgetCheckpointsOf } = await import('../ops/snapshot');
  const { unpackTree } = await import('../archive/tree-tar');
  const from = filesOwnerOf(config.idmap, "the backup's config");
  const safety = `tsvz-before-restore-${Date.now().toString(36)}`;
  if (wasRunning) await (await import('../ops/stop')).stopContainer(c);
  // Whether the files were replaced or rolled back, a container that ran runs again.
  const again = async () => { if (wasRunning) await (await import('../ops/start')).startContainer(c); };
  const bytes = await lockContainer(c, async () => {
    const now = await reconcile(c);
    if (now.status === 'running' || now.status === 'starting') throw new InvalidStateError(`container ${c.name} was started again meanwhile`, 'stop it and retry');
    return withContainerIntent(c, 'restore-backup', { snapshot }, (intent) => withStore(c.root, c.config.pool, async (store) => {
      await intent.will({ kind: 'rollback-snapshot', snapshot: safety });
      await store.snapshot(c.name, safety);
      const rootfs = fs.realpathSync(c.paths.rootfs);
      for (const e of await fs.promises.readdir(rootfs)) await fs.promises.rm(path.join(rootfs, e), { recursive: true, force: true });
      await faultPoint('backup:restore-emptied');
      const got = (await unpackTree(body, rootfs)).bytes;
      await shiftToOwnerOf(c.config, rootfs, from);
      await forgetCheckpointsOf(c, snapshot);
      await store.deleteSnapshot(c.name, safety);
      return got;
    }));
  }).catch(async (err: unknown) => {
    await again().catch((startErr: Error) => addCleanupFailures(err, [`starting ${c.name} again: ${startErr.message}`]));
    throw err;
  });
  // The backup's memory, where it has some, instead of a fresh start.
  if (resume) await resume();
  else await again();
  return bytes;
}

/** A fetched stream's chunks, failing at the end unless they match its trailer. */
async function* verified(it: AsyncIterator<{ chunk?: { data?: Buffer }; trailer?: BackupTrailer }>): AsyncGenerator<Buffer> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) throw new CorruptDataError('the backup stream ended without its checksum');
    if (r.value.trailer) {
      const t = r.value.trailer;
      if (t.bytes !== bytes || !t.sha256 || Buffer.compare(Buffer.from(t.sha256), hash.digest()) !== 0) throw new CorruptDataError('the fetched backup does not match its checksum');
      return;
    }
    const data = r.value.chunk?.data;
    if (!data) throw new CorruptDataError('a backup stream sends chunks, then its trailer');
    hash.update(data);
    bytes += data.length;
    yield Buffer.from(data);
  }
}

const MAX_CONFIG = 256 * 1024;

/** The config a backup carries, checked as if typed (migrate/target.ts checks a migrated one the same way). */
function parseConfig(json: string): ContainerConfig {
  if (typeof json !== 'string' || json.length > MAX_CONFIG) throw new InvalidArgumentError('the backup\'s container config is missing or too large');
  let v: unknown;
  try { v = JSON.parse(json); } catch { throw new InvalidArgumentError('the backup\'s container config is not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError('the backup\'s container config is not an object');
  const c = v as ContainerConfig;
  if (typeof c.template !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(c.template)) throw new InvalidArgumentError('the backup\'s container config names no template by name');
  if (typeof c.net !== 'object' || c.net === null || typeof c.limits !== 'object' || c.limits === null) throw new InvalidArgumentError('the backup\'s container config lacks net or limits');
  return c;
}


