import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { addCleanupFailures, AlreadyExistsError, BusyError, InvalidArgumentError, InvalidStateError, LimitError, NotFoundError, NotSupportedError } from '../lib/errors';
import { faultPoint } from '../lib/fault';
import { trace } from '../lib/trace';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import { unpackTree } from '../archive/tree-tar';
import { unpackTreeChanges } from '../archive/tree-delta';
import type { ContainerConfig } from '../runtime/config';
import { Container } from '../runtime/container';
import type { ArchiveTrust } from '../checkpoint/archive-signature';
import { CriuClient } from '../checkpoint/criu/client';
import { CriuError } from '../checkpoint/criu/errors';
import { criuBinary } from '../checkpoint/criu/binary';
import { startLazyPagesDaemon, transferredPages } from '../checkpoint/criu/lazy-pages';
import { startPageServer } from '../checkpoint/criu/page-server';
import { MAX_PRE_COPY_ROUNDS, type ArchiveManifest, type PageStreamDigest } from '../checkpoint/archive';
import { probeLazyPages } from '../checkpoint/criu/lazy-pages-probe';
import { CheckpointCatalog } from '../checkpoint/catalog';
import { CriuLogs } from '../checkpoint/criu-logs';
import { streamSocketpair } from '../lib/seqpacket';
import { requireCriu, formatVersion } from '../checkpoint/criu/version';
import { CPUINFO_IMAGE } from '../ops/export';
import { createContainer, specLike } from '../ops/create';
import { destroyContainer } from '../ops/destroy';
import { freezeContainer, unfreezeContainer } from '../ops/freeze';
import { importCheckpoint } from '../ops/import';
import { restoreContainer } from '../ops/restore';
import { DEFAULT_POOL, PoolCatalog, pickFormat, SendFormat, withStore } from '../storage';
import { byteLimited } from '../lib/byte-limit';
import { filesOwnerOf, shiftToOwnerOf } from '../runtime/rootfs-owner';
import { migrationSnapshots, releaseMigrationSnapshots } from './files';
import { announceAddress } from '../runtime/network';
import { isSettled, MigrationJournal, MigrationMode, MigrationRecord, TargetPhase, validateMigrationId } from './journal';
import { closeQuietly, killTree, LazyGuard, PageLink, pump, startGuard } from './page-pump';
import { completeWithPages, PageStreams, roundDir, streamDigest } from './page-stream';
import { Sha256 } from '../archive/digest';

export interface PrepareRequest {
  id: string;
  name: string;
  configJson: string;
  /** The pool to put the files in here; the default pool when none. */
  pool?: string;
  /** The trusted client that asks (its name in this host's trust store) and its fingerprint. */
  peer: string;
  peerFingerprint?: string;
  /** CRIU's cpuinfo image of the source's CPU. */
  cpuinfo?: Buffer;
  /** Check only: record and make nothing. */
  checkOnly?: boolean;
  /** stop-and-copy (the default) or post-copy. */
  mode?: MigrationMode;
  /** The stream formats the source's pool sends, preferred first. */
  formats?: string[];
}

/**
 * The target's side of a migration (docs/migration.md): each step checks
 * the journal's phase, writes the next one, then acts. Before `restored`
 * any failure (a broken stream, a refused archive, a restart of the daemon)
 * removes everything the migration made here; a restored copy stays frozen
 * until Commit (thawed) or Abort (destroyed), so two copies never run.
 * Everything the source sends is a stranger's: its config passes create's
 * checks, its files the tree stack's, its checkpoint the archive's
 * signature and checks.
 */
export class MigrationTarget {
  private readonly journal: MigrationJournal;
  /** Names with a step running in this process: a second migration of one name is busy at once. */
  private readonly busy = new Set<string>();

  constructor(private readonly root: Root, private readonly trust: () => ArchiveTrust) {
    this.journal = new MigrationJournal(root);
  }

  async prepare(req: PrepareRequest): Promise<{ criuVersion: string; format: SendFormat }> {
    const id = validateMigrationId(req.id);
    const name = validateName(req.name);
    const pool = validateName(req.pool || DEFAULT_POOL, 'pool');
    const config = parseConfig(req.configJson);
    const mode = parseMode(req.mode);
    const offered = parseFormats(req.formats);
    if (config.name !== name) throw new InvalidArgumentError(`the config sent is of container ${JSON.stringify(String(config.name).slice(0, 40))}, not ${name}`);
    const criu = await requireCriu('4.1');
    if (this.journal.find(id)) throw new AlreadyExistsError(`migration ${id} is known here already`);
    return this.exclusive(name, async () => {
      if (new Container(this.root, name).exists()) throw new AlreadyExistsError(`container ${name} already exists on this host`, 'migrate under that name only to a host without one');
      const other = this.journal.inFlight(name, 'target');
      if (other) throw new BusyError(`a migration of ${name} to this host is in progress (${other.id}, ${other.phase})`, `\`tsvz migrate resolve ${name}\` settles one that was interrupted`);
      if (pool !== DEFAULT_POOL) new PoolCatalog(this.root).get(pool);
      specLike(config, { pool }); // every field refused now, before the source freezes anything
      // Incus's negotiation: the first native format the source offers that this pool takes, else the tar stream.
      const format = pickFormat(offered, await withStore(this.root, pool, async (store) => store.capabilities.sendFormats));
      await checkCpu(this.root, req.cpuinfo);
      if (mode === 'post') await checkLazyPages(this.root);
      if (req.checkOnly) return { criuVersion: formatVersion(criu), format };
      await this.journal.start({ id, role: 'target', name, phase: 'prepared', mode, peer: req.peer, peerFingerprint: req.peerFingerprint });
      this.prepared.set(id, { config, pool, format });
      return { criuVersion: formatVersion(criu), format };
    });
  }

  private readonly prepared = new Map<string, { config: ContainerConfig; pool: string; format: SendFormat }>();

  /** The container's files as packTree sent them: the container is created from them (not from its template). */
  async receiveFiles(id: string, body: Readable, maxBytes: number): Promise<number> {
    const r = this.step(id, 'prepared');
    const p = this.prepared.get(id);
    if (!p) throw new InvalidStateError(`migration ${id} was prepared before this daemon started: start it again`);
    return this.exclusive(r.name, async () => {
      await this.journal.advance(r, 'receiving');
      let bytes = 0;
      try {
        const from = filesOwnerOf(p.config.idmap, 'the config sent');
        trace(`migrate target: creating from files (${p.format})`);
        const spec = specLike(p.config, { pool: p.pool });
        if (p.format === 'tar') {
          await createContainer(this.root, r.name, spec, async (rootfs) => {
            bytes = (await unpackTree(body, fs.realpathSync(rootfs), { limits: { maxBytes } })).bytes;
            return from;
          });
        } else {
          const input = byteLimited(body, maxBytes, 'the files sent', (n) => { bytes += n; });
          const snap = migrationSnapshots(id).running;
          await createContainer(this.root, r.name, spec, { owner: from, receive: (store, dir, undo) => store.receiveRootfs(r.name, snap, { format: p.format }, input, dir, undo) });
        }
      } catch (err) {
        body.destroy();
        throw await this.undone(r, err);
      }
      trace('migrate target: files received');
      await faultPoint('migrate:files-received');
      return bytes;
    });
  }

  /**
   * After the freeze, what changed in the files since receiveFiles (which
   * the source sent while the container ran): removals, then the changes.
   */
  async receiveFileChanges(id: string, body: Readable, removed: string[], maxBytes: number): Promise<number> {
    const r = this.step(id, 'receiving');
    const p = this.prepared.get(id);
    if (!p) throw new InvalidStateError(`migration ${id} was prepared before this daemon started: start it again`);
    return this.exclusive(r.name, async () => {
      try {
        const c = Container.open(this.root, r.name);
        let bytes = 0;
        if (p.format === 'tar') {
          const got = await unpackTreeChanges(body, fs.realpathSync(c.paths.rootfs), removed, { limits: { maxBytes } });
          trace(`migrate target: file changes received (${got.entries} entries, ${got.removed} removed)`);
          bytes = got.bytes;
        } else {
          if (Array.isArray(removed) && removed.length > 0) throw new InvalidArgumentError(`a ${p.format} stream carries its removals itself: no list of them`);
          const snaps = migrationSnapshots(id);
          const input = byteLimited(body, maxBytes, 'the file changes sent', (n) => { bytes += n; });
          await withStore(this.root, p.pool, (store) => store.receive(r.name, snaps.frozen, { format: p.format, parent: snaps.running }, input));
          trace(`migrate target: file changes received (${p.format} send, ${bytes} bytes)`);
        }
        // The source's changes are owned by its range: moved into this copy's where the two differ.
        await shiftToOwnerOf(c.config, fs.realpathSync(c.paths.rootfs), filesOwnerOf(p.config.idmap, 'the config sent'));
        return bytes;
      } catch (err) {
        body.destroy();
        throw await this.undone(r, err);
      }
    });
  }

  /**
   * The memory of a dump or of a pre-copy round (`round` 1, 2, ...; 0 is
   * the final dump's): `criu page-server` here writes what it sends
   * through `link` into a staging directory beside the container (a
   * round's into its subdirectory, linked to the round before), and the
   * stream is counted and hashed as it comes. receiveCheckpoint moves the
   * images into the checkpoint once the signed manifest says the same of
   * every stream.
   */
  async receivePages(id: string, link: PageLink, maxBytes: number, round = 0): Promise<PageStreamDigest> {
    const r = this.step(id, 'receiving');
    if (r.mode === 'post') throw new InvalidStateError(`migration ${id} is post-copy: its memory follows the restore`);
    return this.exclusive(r.name, async () => {
      const streams = this.pagesIn.get(id) ?? { rounds: [] };
      if (streams.final) throw new InvalidStateError(`migration ${id} has its memory already`);
      if (round !== 0 && (r.mode !== 'pre' || round !== streams.rounds.length + 1 || round > MAX_PRE_COPY_ROUNDS)) {
        throw new InvalidArgumentError(`round ${round} of migration ${id} is not the next (${r.mode === 'pre' ? `${streams.rounds.length} came, at most ${MAX_PRE_COPY_ROUNDS}` : 'it has no pre-copy'})`);
      }
      const c = Container.open(this.root, r.name);
      const logs = new CriuLogs(c.paths.dir);
      fs.closeSync(logs.open());
      const staging = pageStaging(c, id);
      const last = streams.rounds.length;
      // One bound for all of a migration's memory: its rounds share it.
      const budget = maxBytes - streams.rounds.reduce((n, d) => n + d.bytes, 0);
      // The first stream (round 1, or a stop-and-copy dump's) makes the staging directory afresh; each round writes into its own, linked to the one before.
      if (last === 0) {
        fs.rmSync(staging, { recursive: true, force: true });
        fs.mkdirSync(staging, { mode: 0o700 });
      }
      const imagesDir = round === 0 ? staging : path.join(staging, roundDir(round));
      if (round !== 0) fs.mkdirSync(imagesDir, { mode: 0o700 });
      const parent = last === 0 ? undefined : round === 0 ? roundDir(last) : `../${roundDir(last)}`;
      const [ours, theirs] = streamSocketpair();
      let server: ReturnType<typeof startPageServer> | undefined;
      try {
        server = startPageServer({ criuPath: criuBinary(), imagesDir, workDir: logs.dir, socket: theirs, logFile: round === 0 ? PAGE_SERVER_LOG : `page-server-${roundDir(round)}.log`, parent });
      } catch (err) {
        closeQuietly(ours);
        throw await this.undone(r, err);
      } finally {
        closeQuietly(theirs);
      }
      const digest = new Sha256();
      try {
        await Promise.all([pump(ours, { ...link, incoming: hashedWithin(link.incoming, digest, budget) }), server.done]);
        const got = streamDigest(digest);
        this.pagesIn.set(id, round === 0 ? { ...streams, final: got } : { rounds: [...streams.rounds, got] });
        trace(`migrate target: memory received (${round === 0 ? 'final dump' : `round ${round}`}, ${got.bytes} bytes)`);
        return got;
      } catch (err) {
        killTree(server.server.pid);
        link.close();
        throw await this.undone(r, err);
      }
    });
  }

  /** Stop-and-copy and pre-copy: the page streams each migration's page servers took in (their images in pageStaging). */
  private readonly pagesIn = new Map<string, PageStreams>();

  /** The signed checkpoint archive as it streams in (checked as it comes): imported, restored and frozen at once. */
  async receiveCheckpoint(id: string, body: Readable, maxBytes: number): Promise<{ initPid: number; restoreMs: number }> {
    const r = this.step(id, 'receiving');
    return this.exclusive(r.name, async () => {
      try {
        const c = Container.open(this.root, r.name);
        trace('migrate target: importing');
        const source = { stream: body, label: `the checkpoint ${r.peer} sent` };
        const staging = pageStaging(c, id);
        const completeImages = (images: string, m: ArchiveManifest) => {
          completeWithPages(staging, images, { rounds: m.preCopy ?? [], final: m.pageStream }, this.pagesIn.get(id) ?? { rounds: [] }, source.label);
        };
        let imported: Awaited<ReturnType<typeof importCheckpoint>>;
        try {
          imported = await importCheckpoint(this.root, r.name, source, { trust: this.trust(), privileged: c.config.idmap === undefined, maxBytes, completeImages });
        } finally {
          this.pagesIn.delete(id);
          fs.rmSync(staging, { recursive: true, force: true });
        }
        if (r.mode === 'post') {
          // The memory comes with Pages, once the source's page server serves.
          this.received.set(id, imported.meta.id);
          await this.journal.advance(r, 'received');
          return { initPid: 0, restoreMs: 0 };
        }
        const t0 = performance.now();
        trace('migrate target: restoring');
        const state = await restoreContainer(c, imported.meta.id);
        trace('migrate target: restored');
        // Frozen until the source's word: the source is frozen too, so the two never both run.
        await freezeContainer(c);
        const restoreMs = performance.now() - t0;
        await this.journal.advance(r, 'restored');
        await faultPoint('migrate:restored');
        return { initPid: state.initPid ?? 0, restoreMs };
      } catch (err) {
        body.destroy();
        throw await this.undone(r, err);
      }
    });
  }

  /** Post-copy: the checkpoint each received migration restores from. */
  private readonly received = new Map<string, string>();

  /**
   * Post-copy: `criu lazy-pages` starts on the received images, its page
   * server being the source's, reached through `link` (the Pages call);
   * the container is restored with its memory left there, runs, and pulls
   * each page when it first touches it, the rest in the background.
   * `onRestored` is told once it runs. Resolves when the last page is in
   * (committed: the source's CRIU kills its tree then). Any failure
   * before that kills this copy, whose missing pages exist nowhere else,
   * and removes everything; the source's CRIU resumes its own tree when
   * its page server loses the link. A guard process kills the copy too
   * when this daemon dies before the last page.
   */
  async pages(id: string, link: PageLink, onRestored: (r: { initPid: number; restoreMs: number }) => Promise<void>): Promise<{ pages: { copied: number; total: number } }> {
    const r = this.step(id, 'received');
    const checkpoint = this.received.get(id);
    if (!checkpoint) throw new InvalidStateError(`migration ${id} was received before this daemon started`);
    return this.exclusive(r.name, async () => {
      const c = Container.open(this.root, r.name);
      const logs = new CriuLogs(c.paths.dir);
      fs.closeSync(logs.open());
      const imagesDir = new CheckpointCatalog(c).dir(checkpoint);
      let initPid: number | undefined;
      let guard: LazyGuard | undefined;
      const [ours, theirs] = streamSocketpair();
      let daemon: ReturnType<typeof startLazyPagesDaemon>['daemon'] | undefined;
      let pumping = false;
      try {
        const started = startLazyPagesDaemon({ criuPath: criuBinary(), imagesDir, workDir: logs.dir, socket: theirs, logFile: LAZY_LOG });
        daemon = started.daemon;
        pumping = true;
        closeQuietly(theirs);
        const pumped = pump(ours, link);
        const daemonDone = daemon.exited.then((exit) => {
          if (exit.code !== 0 || exit.signal) throw new CriuError('lazy-pages', { logPath: path.join(logs.dir, LAZY_LOG), detail: exit.signal ? `criu lazy-pages was killed by ${exit.signal}` : undefined });
        });
        // Either failing ends every step below; either ending well is no news before the last page.
        const failure = Promise.race([onlyFailure(pumped), onlyFailure(daemonDone)]);
        failure.catch(() => undefined);
        await Promise.race([started.ready, failure]);
        trace('migrate target: lazy-pages ready');
        const t0 = performance.now();
        const state = await Promise.race([restoreContainer(c, checkpoint, { lazyPages: true }), failure]);
        initPid = state.initPid;
        if (initPid) guard = startGuard(initPid);
        const restoreMs = performance.now() - t0;
        await this.journal.advance(r, 'restored');
        trace('migrate target: restored lazily');
        void announce(c, initPid);
        await onRestored({ initPid: initPid ?? 0, restoreMs });
        await faultPoint('migrate:restored');
        await Promise.race([daemonDone, onlyFailure(pumped)]);
        // Every page is here: the copy no longer needs the source.
        guard?.release();
        await this.journal.advance(r, 'committed');
        this.received.delete(id);
        this.prepared.delete(id);
        await dropTransferSnapshots(c, r.id);
        return { pages: transferredPages(path.join(logs.dir, LAZY_LOG)) };
      } catch (err) {
        // The daemon first: a daemon that saw its tree die would still close its session, which the source's CRIU takes for the end.
        if (daemon?.pid) killTree(daemon.pid);
        if (initPid) killTree(initPid);
        guard?.release();
        if (!pumping) {
          closeQuietly(ours);
          closeQuietly(theirs);
        }
        link.close();
        this.received.delete(id);
        throw await this.undone(r, err);
      } finally {
        // The daemon's socket for the restore, left behind by criu lazy-pages.
        fs.rmSync(path.join(logs.dir, 'lazy-pages.socket'), { force: true });
      }
    });
  }

  /** The source killed its copy: this one runs. Idempotent. */
  async commit(id: string): Promise<MigrationRecord> {
    const r = this.journal.get(validateMigrationId(id));
    if (r.role !== 'target') throw new InvalidArgumentError(`migration ${id} is not one to this host`);
    if (r.phase === 'committed') return r;
    if (r.phase !== 'restored' || r.mode === 'post') throw new InvalidStateError(`migration ${id} of ${r.name} is ${r.phase}: only a restored copy can be committed`);
    return this.exclusive(r.name, async () => {
      await this.journal.advance(r, 'committed');
      this.prepared.delete(r.id);
      const c = Container.open(this.root, r.name);
      await unfreezeContainer(c);
      await announce(c, c.state().initPid);
      await dropTransferSnapshots(c, r.id);
      return r;
    });
  }

  /** Undo everything before the commit; refused after it. Idempotent. */
  async abort(id: string, reason: string): Promise<MigrationRecord> {
    const r = this.journal.get(validateMigrationId(id));
    if (r.role !== 'target') throw new InvalidArgumentError(`migration ${id} is not one to this host`);
    if (r.phase === 'aborted') return r;
    if (r.phase === 'committed') throw new InvalidStateError(`migration ${id} of ${r.name} was committed: the container runs here`);
    return this.exclusive(r.name, () => this.abortRecord(r, reason));
  }

  status(id: string): MigrationRecord | undefined {
    return this.journal.find(validateMigrationId(id));
  }

  /**
   * After a restart: what was being received is removed; a restored copy
   * stays frozen, waiting for Commit or Abort (or `tsvz migrate resolve`).
   */
  async recover(): Promise<MigrationRecord[]> {
    const undone: MigrationRecord[] = [];
    for (const r of this.journal.list()) {
      // A restored post-copy misses pages the source no longer serves (its guard killed it): undone too.
      if (r.role !== 'target' || isSettled(r) || (r.phase === 'restored' && r.mode !== 'post')) continue;
      await this.abortRecord(r, 'the daemon restarted during the transfer');
      undone.push(r);
    }
    return undone;
  }

  private step(id: string, want: TargetPhase): MigrationRecord {
    const r = this.journal.get(validateMigrationId(id));
    if (r.role !== 'target' || r.phase !== want) throw new InvalidStateError(`migration ${id} of ${r.name} is ${r.phase}, not ${want}`);
    return r;
  }

  private async abortRecord(r: MigrationRecord, reason: string): Promise<MigrationRecord> {
    this.prepared.delete(r.id);
    this.received.delete(r.id);
    this.pagesIn.delete(r.id);
    if (new Container(this.root, r.name).exists() || r.phase !== 'prepared') {
      try {
        await destroyContainer(this.root, r.name, true);
      } catch (err) {
        // A create that failed has undone itself: nothing is left to remove.
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return this.journal.advance(r, 'aborted', reason);
  }

  /** `err`, once what the migration made here is removed; an undo that fails is recorded on it, never in its place. */
  private async undone(r: MigrationRecord, err: unknown): Promise<unknown> {
    try {
      await this.abortRecord(r, describe(err));
    } catch (undoErr) {
      addCleanupFailures(err, [`removing what migration ${r.id} made: ${describe(undoErr)}`]);
    }
    return err;
  }

  private async exclusive<T>(name: string, body: () => Promise<T>): Promise<T> {
    if (this.busy.has(name)) throw new BusyError(`container ${name} is busy with another migration step`, 'try again when it is done');
    this.busy.add(name);
    try {
      return await body();
    } finally {
      this.busy.delete(name);
    }
  }
}

/** `source`, hashed into `sha` on its way, until it passes `maxBytes`: the disk a source may fill here is bounded. */
async function* hashedWithin(source: AsyncIterable<Buffer>, sha: Sha256, maxBytes: number): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    sha.update(chunk);
    if (sha.size > maxBytes) throw new LimitError(`the memory sent is over this host's upload limit of ${maxBytes} bytes`, 'the stream was stopped');
    yield chunk;
  }
}

const LAZY_LOG = 'lazy-pages.log';
const PAGE_SERVER_LOG = 'page-server.log';

/** Where stop-and-copy's page server writes: inside the container's directory, so its removal takes it too. */
function pageStaging(c: Container, id: string): string {
  return path.join(c.paths.dir, `migrate-pages-${id.slice(0, 12)}`);
}

/**
 * A bridged copy that runs here says so on its segment (gratuitous ARP).
 * Not being able to is no reason to undo a migration: peers find the
 * address anyway once their caches time out.
 */
async function announce(c: Container, initPid: number | undefined): Promise<void> {
  if (c.config.net.mode !== 'bridge' || !initPid) return;
  try {
    await announceAddress(initPid, c.config.net);
    trace('migrate target: address announced');
  } catch (err) {
    process.emitWarning(`${c.name}: could not announce its address after the migration: ${describe(err)}`);
  }
}

/**
 * The snapshots a native file transfer left on the committed copy: only the
 * transfer needed them. Failing to remove them is said, not undone.
 */
async function dropTransferSnapshots(c: Container, id: string): Promise<void> {
  try {
    await releaseMigrationSnapshots(c, id);
  } catch (err) {
    process.emitWarning(`${c.name}: could not remove the migration's snapshots: ${describe(err)}`);
  }
}

const FORMATS: readonly SendFormat[] = ['btrfs', 'zfs', 'tar'];

/** The source's offer: known formats only, at most a few; none means the tar stream. */
function parseFormats(v: unknown): SendFormat[] {
  if (v === undefined || (Array.isArray(v) && v.length === 0)) return ['tar'];
  if (!Array.isArray(v) || v.length > 8) throw new InvalidArgumentError('the source offered no valid list of file transfer types');
  return v.filter((f): f is SendFormat => FORMATS.includes(f as SendFormat));
}

/** `p`'s failure; its success never settles. */
function onlyFailure(p: Promise<unknown>): Promise<never> {
  return p.then(() => new Promise<never>(() => undefined));
}

function parseMode(mode: unknown): MigrationMode {
  if (mode === undefined || mode === '' || mode === 'stop') return 'stop';
  if (mode === 'pre' || mode === 'post') return mode;
  throw new InvalidArgumentError(`unknown migration mode ${JSON.stringify(String(mode).slice(0, 20))}`, 'stop, pre or post');
}

let lazyVerdict: Promise<{ ok: boolean; reason?: string }> | undefined;

/** Post-copy needs a CRIU whose lazy restore works here: probed once per process (a tiny process moved lazily). */
async function checkLazyPages(root: Root): Promise<void> {
  fs.mkdirSync(root.cacheDir, { recursive: true, mode: 0o700 });
  lazyVerdict ??= probeLazyPages({ parentDir: root.cacheDir });
  const v = await lazyVerdict;
  if (!v.ok) {
    lazyVerdict = undefined; // a fixed host is probed again next time
    throw new NotSupportedError(`post-copy does not work on this host: ${v.reason ?? 'the lazy-pages probe failed'}`, 'migrate with --mode stop');
  }
}

const MAX_CPUINFO = 64 * 1024;

/** The source's CPU against this one (CRIU's cpuinfo check), before anything freezes there. */
async function checkCpu(root: Root, image: Buffer | undefined): Promise<void> {
  if (!image || image.length === 0) throw new InvalidArgumentError('the source sent no cpuinfo image', 'a migration checks the CPU before the freeze');
  if (image.length > MAX_CPUINFO) throw new LimitError(`a cpuinfo image of ${image.length} bytes is over ${MAX_CPUINFO}`);
  fs.mkdirSync(root.cacheDir, { recursive: true, mode: 0o700 });
  const dir = fs.mkdtempSync(path.join(root.cacheDir, 'cpuinfo-'));
  try {
    fs.writeFileSync(path.join(dir, CPUINFO_IMAGE), image, { mode: 0o600 });
    const fd = fs.openSync(dir, 'r');
    try {
      await new CriuClient().cpuinfoCheck(fd);
    } catch (err) {
      const why = err instanceof CriuError ? err.errorLines.find((l) => !/cpuinfo check failed|FAILED/i.test(l)) ?? err.message : describe(err);
      throw new NotSupportedError(`the source's CPU is not one this host can run its processes on: ${why.replace(/^Error \([^)]*\): /, '')}`, 'migrate to a host with the same CPU features');
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const MAX_CONFIG = 256 * 1024;

function parseConfig(json: string): ContainerConfig {
  if (typeof json !== 'string' || json.length > MAX_CONFIG) throw new InvalidArgumentError('the container config sent is missing or too large');
  let v: unknown;
  try { v = JSON.parse(json); } catch { throw new InvalidArgumentError('the container config sent is not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError('the container config sent is not an object');
  const c = v as ContainerConfig;
  if (typeof c.template !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(c.template)) {
    throw new InvalidArgumentError('the container config sent names no template by name', 'a migration carries busybox or debian containers; never a path on this host');
  }
  if (typeof c.net !== 'object' || c.net === null || typeof c.limits !== 'object' || c.limits === null) throw new InvalidArgumentError('the container config sent lacks net or limits');
  return c;
}


