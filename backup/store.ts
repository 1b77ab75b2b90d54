import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { compareText } from '../lib/compare';
import { CorruptDataError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { withLock } from '../lib/lock';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import type { Pool, SendFormat } from '../storage';
import { PoolCatalog, validateSnapshotName } from '../storage';
import { applyRetention, KeepPolicy, wallClock } from './retention';

/**
 * A host's backup store: what other hosts shipped here. Not containers: a
 * backup becomes one only when restored. The data lives in a pool (the
 * root's pool named "backups" when there is one, so btrfs and zfs streams
 * are received natively and incrementally; else a dir pool of its own under
 * ROOT/backups, which takes full tar streams), the record in
 * ROOT/backups/store.json. A backup is recorded only after its stream was
 * received whole and its sha256 matched the sender's; a volume or snapshot
 * in the pool that the record does not name is the remains of a cut-off
 * transfer, and is removed when the store opens.
 */

export interface StoredBackup {
  /** Fingerprint of the host that sent it: each host sees only its own. */
  source: string;
  /** That host's name as this host knows it (trust.json). */
  sourceName: string;
  container: string;
  snapshot: string;
  createdAt: string;
  format: SendFormat;
  parent?: string;
  /** The store pool's volume holding it (one per backup for tar, one per container chain for native streams). */
  volume: string;
  bytes: number;
  sha256: string;
  schedule?: string;
  keep?: KeepPolicy;
  timeZone?: string;
  configJson: string;
  receivedAt: string;
  /** A stateful backup's memory: the signed checkpoint archive, checked and kept as it came (ROOT/backups/state/). */
  state?: { bytes: number; sha256: string };
}

interface StoreFile { version: 1; backups: StoredBackup[] }

export const STORE_POOL = 'backups';
/** The store's volume names: one per tar backup, one per native chain. */
const STORE_VOLUME = /^(t-[0-9a-f]{16}|c-[0-9a-f]{24})$/;
const MAX_CONFIG = 256 * 1024;

export interface IncomingBackup {
  source: string;
  sourceName: string;
  container: string;
  snapshot: string;
  createdAt: string;
  format: SendFormat;
  parent?: string;
  configJson: string;
  schedule?: string;
  keep?: KeepPolicy;
  timeZone?: string;
}

export class BackupStore {
  private opened?: Promise<Pool>;

  /** `keep`: this host's own rules for what it stores (default: each sender's). */
  constructor(readonly root: Root, private readonly opts: { pool?: string; keep?: KeepPolicy } = {}) {}

  private get dir(): string { return path.join(this.root.dir, 'backups'); }
  private get file(): string { return path.join(this.dir, 'store.json'); }
  private get lockFile(): string { return path.join(this.root.locksDir, 'backup-store.lock'); }

  list(filter: { source?: string; container?: string } = {}): StoredBackup[] {
    return (readJsonIfExists<StoreFile>(this.file)?.backups ?? [])
      .filter((b) => (filter.source === undefined || b.source === filter.source) && (filter.container === undefined || b.container === filter.container));
  }

  find(container: string, snapshot: string, source?: string): StoredBackup {
    const found = this.list({ container, source }).filter((b) => b.snapshot === snapshot);
    if (found.length === 0) throw new NotFoundError(`no backup ${snapshot} of ${container} in the backup store`, `see \`tsvz backup list ${container}\``);
    if (found.length > 1) throw new InvalidArgumentError(`backups ${snapshot} of ${container} came from several hosts (${found.map((b) => b.sourceName).join(', ')})`);
    return found[0];
  }

  /** The formats the store receives, preferred first. */
  async formats(): Promise<SendFormat[]> {
    return (await this.pool()).driver.capabilities.sendFormats;
  }

  /** The store's pool, opened once; unrecorded volumes and snapshots (cut-off transfers) removed first. */
  pool(): Promise<Pool> {
    this.opened ??= this.locked(async () => {
      const p = await this.openPool();
      await this.sweep(p);
      return p;
    });
    this.opened.catch(() => { this.opened = undefined; });
    return this.opened;
  }

  /**
   * The pool, as first chosen (ROOT/backups/store-pool.json): the pool
   * asked for (`tsvz daemon --backup-pool`), else the root's pool named
   * "backups", else a dir pool of the store's own. A store that holds
   * backups never moves to another pool behind their back.
   */
  private async openPool(): Promise<Pool> {
    const { getDriver, openPool } = await import('../storage/registry');
    const catalog = new PoolCatalog(this.root);
    const recordFile = path.join(this.dir, 'store-pool.json');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const dir = getDriver('dir');
    type Own = Awaited<ReturnType<typeof dir.createPool>>;
    let chosen = readJsonIfExists<{ catalogPool: string } | { own: Own }>(recordFile);
    const asked = this.opts.pool;
    if (chosen && asked !== undefined && !('catalogPool' in chosen && chosen.catalogPool === asked)) {
      throw new InvalidArgumentError(`the backup store is in ${'catalogPool' in chosen ? `pool ${chosen.catalogPool}` : 'its own dir pool'} already, not ${asked}`, 'start the daemon without --backup-pool, or move the backups first');
    }
    if (!chosen) {
      const name = asked ?? (catalog.list().some((e) => e.record.name === STORE_POOL) ? STORE_POOL : undefined);
      if (name !== undefined) catalog.get(name); // "no such pool"
      chosen = name !== undefined ? { catalogPool: name } : { own: await dir.createPool({ name: STORE_POOL, driver: 'dir', rootDir: this.dir }) };
      await writeJsonAtomic(recordFile, chosen);
    }
    if ('catalogPool' in chosen) return openPool(catalog.get(chosen.catalogPool).record);
    return dir.openPool(chosen.own);
  }

  private async sweep(p: Pool): Promise<void> {
    const known = this.list();
    // Memory files the record does not name: a receive that was cut off, or a prune that was.
    const states = new Set(known.filter((b) => b.state).map((b) => path.basename(this.stateFile(b))));
    let files: string[] = [];
    try { files = await fs.promises.readdir(path.join(this.dir, 'state')); } catch { /* none yet */ }
    for (const f of files) if (!states.has(f)) await fs.promises.rm(path.join(this.dir, 'state', f), { force: true });
    const volumes = new Set(known.map((b) => b.volume));
    for (const vol of await p.listVolumes()) {
      // Only the store's own names: a pool shared with containers keeps theirs.
      if (!STORE_VOLUME.test(vol) || fs.existsSync(this.root.containerDir(vol))) continue;
      if (!volumes.has(vol)) { await p.deleteVolume(vol); continue; }
      const snaps = new Set(known.filter((b) => b.volume === vol).map((b) => b.snapshot));
      for (const s of await p.listSnapshots(vol)) if (!snaps.has(s.name)) await p.deleteSnapshot(vol, s.name);
    }
  }

  /**
   * Receive one backup from `input` (the stream's bytes) and register it once
   * `trailer()` (known after the last byte) gives the sha256 that matches.
   * Any failure leaves nothing: the volume or snapshot is removed again.
   */
  async receive(b: IncomingBackup, input: Readable, trailer: () => { sha256?: Buffer; bytes?: number } | undefined): Promise<{ bytes: number; pruned: string[] }> {
    validateName(b.container);
    validateSnapshotName(b.snapshot);
    if (b.parent !== undefined) validateSnapshotName(b.parent);
    if (Number.isNaN(Date.parse(b.createdAt))) throw new InvalidArgumentError(`the backup's creation time "${String(b.createdAt).slice(0, 40)}" is not a time`);
    if (b.timeZone !== undefined) wallClock(b.timeZone); // refused now, not when the store prunes after registering
    if (typeof b.configJson !== 'string' || b.configJson.length > MAX_CONFIG) throw new InvalidArgumentError('the container config sent is missing or too large');
    const p = await this.pool();
    if (!p.driver.capabilities.sendFormats.includes(b.format)) throw new InvalidArgumentError(`this backup store does not take ${b.format} streams`, `it takes: ${p.driver.capabilities.sendFormats.join(', ')}`);
    const mine = this.list({ source: b.source, container: b.container });
    if (mine.some((x) => x.snapshot === b.snapshot)) throw new InvalidArgumentError(`the store already holds backup ${b.snapshot} of ${b.container}`);
    let volume: string;
    if (b.format === 'tar') {
      if (b.parent !== undefined) throw new InvalidArgumentError('tar streams are always full: a parent makes no sense');
      volume = `t-${crypto.randomBytes(8).toString('hex')}`;
    } else {
      volume = chainVolume(b.source, b.container);
      if (b.parent !== undefined && !mine.some((x) => x.snapshot === b.parent && x.volume === volume)) {
        throw new NotFoundError(`the store does not hold ${b.parent}, the base of this incremental send`, 'send it in full');
      }
      if (b.parent === undefined && mine.some((x) => x.volume === volume)) throw new InvalidArgumentError('a full native stream into a chain the store holds already', 'send it incrementally from a base the store has');
    }
    const { stream: counted, digest: digestOf } = hashing(input);
    let bytes = 0;
    try {
      await p.receive(volume, b.snapshot, { format: b.format, ...(b.parent ? { parent: b.parent } : {}) }, counted);
      const t = trailer();
      if (!t?.sha256) throw new CorruptDataError('the stream ended without its checksum');
      const got = digestOf();
      const digest = got.sha256;
      bytes = got.bytes;
      if (t.bytes !== bytes || !crypto.timingSafeEqual(digest.length === t.sha256.length ? t.sha256 : Buffer.alloc(digest.length), digest)) {
        throw new CorruptDataError(`backup ${b.snapshot} of ${b.container} does not match its checksum (${bytes} bytes received, ${t.bytes ?? '?'} sent)`, 'nothing was registered; the next run sends it again');
      }
      const rec: StoredBackup = {
        source: b.source, sourceName: b.sourceName, container: b.container, snapshot: b.snapshot, createdAt: new Date(b.createdAt).toISOString(),
        format: b.format, ...(b.parent ? { parent: b.parent } : {}), volume, bytes, sha256: digest.toString('hex'),
        ...(b.schedule ? { schedule: b.schedule } : {}), ...(b.keep ? { keep: b.keep } : {}), ...(b.timeZone ? { timeZone: b.timeZone } : {}),
        configJson: b.configJson, receivedAt: new Date().toISOString(),
      };
      await this.locked(async () => {
        // Checked again under the lock: two senders of one snapshot at once register it once.
        if (this.list({ source: b.source, container: b.container }).some((x) => x.snapshot === b.snapshot)) {
          throw new InvalidArgumentError(`the store already holds backup ${b.snapshot} of ${b.container}`);
        }
        await this.save([...this.list(), rec]);
      });
    } catch (err) {
      await this.discard(p, volume, b.snapshot).catch(() => undefined);
      throw err;
    }
    return { bytes, pruned: await this.prune(b.source, b.container, b.schedule) };
  }

  /** The store's retention over one schedule's backups: this host's rules if it has some, else the sender's. */
  private async prune(source: string, container: string, schedule?: string): Promise<string[]> {
    const mine = this.list({ source, container }).filter((b) => b.schedule === schedule);
    const newest = mine.reduce<StoredBackup | undefined>((a, b) => (!a || Date.parse(b.createdAt) > Date.parse(a.createdAt) ? b : a), undefined);
    const keep = this.opts.keep ?? newest?.keep;
    if (!newest || !keep || Object.keys(keep).length === 0) return [];
    const holds = new Map<string, string>();
    const decisions = applyRetention(mine.map((b) => ({ name: b.snapshot, createdAt: b.createdAt })), keep, { timeZone: newest.timeZone, holds });
    const removed: string[] = [];
    const p = await this.pool();
    for (const d of decisions.filter((x) => x.action === 'remove')) {
      const b = mine.find((x) => x.snapshot === d.name)!;
      try {
        await this.locked(async () => this.save(this.list().filter((x) => !(x.source === b.source && x.container === b.container && x.snapshot === b.snapshot))));
        await fs.promises.rm(this.stateFile(b), { force: true });
        await this.discard(p, b.volume, b.snapshot);
        removed.push(b.snapshot);
      } catch { /* kept; the next prune tries again, and the sweep removes what the record no longer names */ }
    }
    return removed;
  }

  /** Where a backup's memory is kept: named after the backup, whatever its names. */
  stateFile(b: Pick<StoredBackup, 'source' | 'container' | 'snapshot'>): string {
    const id = crypto.createHash('sha256').update(`${b.source}\0${b.container}\0${b.snapshot}`).digest('hex').slice(0, 32);
    return path.join(this.dir, 'state', `${id}.tar`);
  }

  /**
   * A registered backup's memory, from `input` (its bytes) and `trailer()`:
   * written to a scratch file, its sha256 matched, then checked as a
   * checkpoint archive signed by `trust` (the sender) with every file
   * against its manifest, and only then kept and recorded. Any failure
   * leaves nothing.
   */
  async receiveState(source: string, container: string, snapshot: string, input: Readable, trailer: () => { sha256?: Buffer; bytes?: number } | undefined, check: (file: string) => Promise<void>): Promise<number> {
    validateName(container);
    validateSnapshotName(snapshot);
    const b = this.list({ source, container }).find((x) => x.snapshot === snapshot);
    if (!b) throw new NotFoundError(`the store holds no backup ${snapshot} of ${container} from you`, 'its files go first');
    if (b.state) throw new InvalidArgumentError(`the store holds the memory of ${snapshot} of ${container} already`);
    const file = this.stateFile(b);
    await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const scratch = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.part`;
    const { stream, digest } = hashing(input);
    try {
      await pipeline(stream, fs.createWriteStream(scratch, { flags: 'wx', mode: 0o600 }));
      const t = trailer();
      const got = digest();
      if (!t?.sha256 || t.bytes !== got.bytes || !crypto.timingSafeEqual(got.sha256.length === t.sha256.length ? t.sha256 : Buffer.alloc(got.sha256.length), got.sha256)) {
        throw new CorruptDataError(`the memory of backup ${snapshot} of ${container} does not match its checksum`, 'nothing was registered');
      }
      await check(scratch);
      await this.locked(async () => {
        const all = this.list();
        const rec = all.find((x) => x.source === source && x.container === container && x.snapshot === snapshot);
        if (!rec) throw new NotFoundError(`backup ${snapshot} of ${container} was pruned meanwhile`);
        if (rec.state) throw new InvalidArgumentError(`the store holds the memory of ${snapshot} of ${container} already`);
        await fs.promises.rename(scratch, file);
        rec.state = { bytes: got.bytes, sha256: got.sha256.toString('hex') };
        await this.save(all);
      });
      return got.bytes;
    } finally {
      await fs.promises.rm(scratch, { force: true });
    }
  }

  /** A backup's stream as stored, in a format the reader takes (the store's native one, else tar), with its sha256 computed on the way. */
  async send(b: StoredBackup, format: SendFormat): Promise<Readable> {
    const p = await this.pool();
    return p.send(b.volume, b.snapshot, { format });
  }

  private async discard(p: Pool, volume: string, snapshot: string): Promise<void> {
    if (!(await p.hasVolume(volume))) return;
    const snaps = await p.listSnapshots(volume);
    const others = snaps.filter((s) => s.name !== snapshot);
    if (volume.startsWith('t-') || others.length === 0) await p.deleteVolume(volume);
    else if (snaps.some((s) => s.name === snapshot)) await p.deleteSnapshot(volume, snapshot);
  }

  private save(backups: StoredBackup[]): Promise<void> {
    const sorted = [...backups].sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.snapshot, b.snapshot));
    return writeJsonAtomic(this.file, { version: 1, backups: sorted } satisfies StoreFile);
  }

  private locked<T>(body: () => Promise<T>): Promise<T> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.root.locksDir, { recursive: true, mode: 0o700 });
    return withLock(this.lockFile, 'the backup store', 30_000, body);
  }
}

/** The volume of one source's container chain: a name from the pair, valid whatever they are. */
function chainVolume(source: string, container: string): string {
  return `c-${crypto.createHash('sha256').update(`${source}\0${container}`).digest('hex').slice(0, 24)}`;
}

/** A stream that hashes what flows through it; `digest()` once it ended. */
export function hashing(input: Readable): { stream: Readable; digest: () => { sha256: Buffer; bytes: number } } {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  const out = new Transform({ transform(chunk: Buffer, _enc, cb) { hash.update(chunk); bytes += chunk.length; cb(null, chunk); } });
  input.on('error', (err) => out.destroy(err));
  out.on('close', () => { if (!input.destroyed) input.destroy(); });
  input.pipe(out);
  let done: { sha256: Buffer; bytes: number } | undefined;
  return { stream: out, digest: () => (done ??= { sha256: hash.digest(), bytes }) };
}
