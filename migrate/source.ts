import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { BusyError, InvalidStateError, TsvzError } from '../lib/errors';
import { faultPause, faultPoint } from '../lib/fault';
import { processStartTime, residentMemoryBytes } from '../lib/proc';
import { trace } from '../lib/trace';
import type { Root } from '../lib/root';
import { Container } from '../runtime/container';
import { reconcile } from '../runtime/release';
import { readState, writeState } from '../runtime/state';
import { checkpointManifest, packCheckpoint, PageStreamDigest, PARENT_LINK } from '../checkpoint/archive';
import type { ArchiveSigner } from '../checkpoint/archive-signature';
import { CheckpointCatalog, CheckpointMeta } from '../checkpoint/catalog';
import { CriuClient } from '../checkpoint/criu/client';
import { formatVersion, requireCriu } from '../checkpoint/criu/version';
import { dumpContainer } from '../checkpoint/dump';
import { CPUINFO_IMAGE } from '../ops/export';
import { lockContainer, withContainerIntent } from '../ops/recovery';
import { isSettled, MigrationJournal, MigrationMode, MigrationRecord, newMigrationId } from './journal';
import { FilePasses, filePasses, offeredFormats } from './files';
import type { SendFormat } from '../storage';
import { closeQuietly, PAGE_SERVER_POISON, PageLink, pump } from './page-pump';
import { hashedSend, streamDigest } from './page-stream';
import { Sha256 } from '../archive/digest';
import { streamSocketpair } from '../lib/seqpacket';
import { meter, metered, TransferProgress } from './progress';
import { lazyBytes } from '../checkpoint/images';
import { plugIntoBridge, unplugFromBridge } from '../runtime/network';
import { canTrackMemory, preCopy, PreCopyResult, PreCopyRound, releasePreCopyImages, requireMemoryTracking } from './pre-copy';

/** The target's side as the source drives it: gRPC in migrate/link.ts, in-process in unit tests. */
export interface TargetLink {
  /** The target as this host names it (its remote's name). */
  readonly peer: string;
  readonly peerFingerprint?: string;
  /** `formats`: the stream formats this pool sends, preferred first; the answer's `format` is the one the target's pool takes. */
  prepare(req: { id: string; name: string; configJson: string; criuVersion: string; filesBytes: number; pool?: string; cpuinfo: Buffer; checkOnly?: boolean; mode?: MigrationMode; formats: SendFormat[] }, signal?: AbortSignal): Promise<{ criuVersion?: string; format?: string }>;
  /** The transfers end (the call cancelled) when `signal` aborts. */
  sendFiles(id: string, name: string, body: Readable, signal?: AbortSignal): Promise<number>;
  /** After the freeze: `removed` (relative paths), then what changed since sendFiles (a tree stream, or the native difference). */
  sendFileChanges(id: string, name: string, removed: string[], body: Readable, signal?: AbortSignal): Promise<number>;
  sendCheckpoint(id: string, name: string, body: Readable, signal?: AbortSignal): Promise<{ initPid?: number; restoreMs?: number }>;
  /**
   * The memory's channel: post-copy's to the target's lazy-pages daemon
   * (`onRestored` once the copy runs there), stop-and-copy's to its page
   * server (it ends once that has every page); pre-copy's `round` (1, 2,
   * ...) to a page server there for that round.
   */
  pages(id: string, onRestored: (r: { initPid?: number; restoreMs?: number }) => void, round?: number): PageLink;
  commit(id: string): Promise<void>;
  abort(id: string, reason: string): Promise<void>;
}

export interface MigrateOptions {
  /** Leave the stopped source (with its checkpoint) instead of destroying it. */
  keepSource?: boolean;
  /** The pool for the files on the target. */
  pool?: string;
  /**
   * stop: stop-and-copy; pre: iterative pre-copy while it runs, then
   * stop-and-copy of what changed (needs dirty memory tracking); post:
   * post-copy (the copy runs on the target while its memory follows);
   * auto: pre-copy where this host tracks dirty memory, else
   * stop-and-copy. auto never picks post-copy.
   */
  mode?: MigrationMode | 'auto';
  /** Signs the checkpoint archive (this host's key): the target accepts only a trusted host's. */
  signer: ArchiveSigner;
  /** Each phase as it begins (for the CLI's progress line). */
  onPhase?: (phase: string) => void;
  /** The files' and the memory's transfer as they go. */
  onProgress?: (p: TransferProgress) => void;
  /**
   * Cancels the migration until the switch-over (`migrate cancel`, Ctrl-C):
   * the source runs on, the target is told to drop its copy. Past it, the
   * migration finishes.
   */
  signal?: AbortSignal;
  /** This host's daemon drives it for a remote client: `migrate cancel` here points to that client. */
  byDaemon?: boolean;
  /** Its id, once journaled (a remote caller follows its phase with it). */
  onJournaled?: (id: string) => void;
}

export interface MigrationResult {
  id: string;
  name: string;
  to: string;
  mode: 'stop-and-copy' | 'pre-copy' | 'post-copy';
  /** Pre-copy: its rounds while the container ran, before the final dump. */
  preCopyRounds?: PreCopyRound[];
  /** From the freeze (CRIU's pre-dump notification) until the target held the restored copy (post-copy: until it ran). */
  frozenMs: number;
  /** Post-copy: from the freeze until the last page was on the target. */
  lastPageMs?: number;
  totalMs: number;
  filesBytes: number;
  /** How the files went: the pools' native send (btrfs, zfs) or the tar stream. */
  filesFormat: SendFormat;
  /** Of filesBytes, what went after the freeze: the changes since the first pass. */
  changedFilesBytes: number;
  imagesBytes: number;
  restoreMs: number;
  keptSource: boolean;
}

/**
 * `tsvz migrate NAME --to HOST`, stop-and-copy: the target checks what it
 * is sent before anything freezes; then CRIU dumps the container, and at
 * its post-dump notification (tree frozen, images written) the rootfs and
 * the signed checkpoint go to the target, which restores it and holds it
 * frozen. Only then is `switching` journaled and CRIU let kill the tree;
 * the target is told to commit (thaw). Any failure before `switching`
 * answers CRIU's notification with failure, so CRIU resumes the source, and
 * the target is told to abort (it also does by itself when the stream breaks).
 */
export async function migrateContainer(root: Root, name: string, link: TargetLink, opts: MigrateOptions): Promise<MigrationResult> {
  const c = Container.open(root, name);
  const journal = new MigrationJournal(root);
  const t0 = performance.now();
  const phase = (p: string) => opts.onPhase?.(p);
  const result = await lockContainer(c, async () => {
    const { state, criu, rootfs } = await checkSource(c, journal);
    const cpuinfo = await cpuinfoImage(c);
    const id = newMigrationId();
    const mode = await chosenMode(opts.mode);
    const filesBytes = await treeBytes(rootfs);
    const driver = { pid: process.pid, start: processStartTime(process.pid) ?? 0, ...(opts.byDaemon ? { daemon: true } : {}) };
    const rec = await journal.start({ id, role: 'source', name, phase: 'preparing', mode, peer: link.peer, peerFingerprint: link.peerFingerprint, driver });
    opts.onJournaled?.(id);
    phase('checking the target');
    let format: SendFormat;
    try {
      const formats = await offeredFormats(c);
      const prepared = link.prepare({ id, name, configJson: JSON.stringify(c.config), criuVersion: formatVersion(criu), filesBytes, pool: opts.pool, cpuinfo, mode, formats }, opts.signal);
      format = chosenFormat((await unlessCancelled(opts.signal, prepared)).format, formats, link.peer);
    } catch (err) {
      if (opts.signal?.aborted) await link.abort(id, message(err)).catch(() => undefined);
      await journal.advance(rec, 'aborted', message(err));
      throw err;
    }
    await journal.advance(rec, 'transferring');
    const files = filePasses(c, rootfs, id, format);
    try {
      const done = await transfer(c, state, rec, { passes: files, bytes: filesBytes }, cpuinfo, link, opts, journal);
      if (opts.keepSource) await writeState(c.paths, { ...readState(c.paths), migratedTo: { host: link.peer, at: new Date().toISOString(), migration: id } });
      return done;
    } finally {
      // Kept on failure only where CRIU failed past the switch-over: resolve releases them then.
      if (isSettled(rec)) {
        await files.release().catch((err: unknown) => process.emitWarning(`${name}: could not remove the migration's snapshots: ${message(err)}`));
        releasePreCopyImages(c, id);
      }
    }
  }, { waitMs: 0 }); // a migration holds the container for long: a second one is told at once
  if (!opts.keepSource) {
    const { destroyContainer } = await import('../ops/destroy');
    await destroyContainer(root, name, true);
  }
  return { ...result, totalMs: performance.now() - t0, keptSource: opts.keepSource === true };
}

/**
 * `tsvz migrate --check`: every check a migration makes before its freeze,
 * on both hosts (running here, no migration in flight, CRIU; there: the
 * name, the pool, the config, the space, CRIU, this CPU), and nothing else.
 */
export interface CheckResult { name: string; to: string; filesBytes: number; filesFormat: SendFormat; targetCriu?: string }

export async function checkMigration(root: Root, name: string, link: TargetLink, opts: { pool?: string; mode?: MigrationMode | 'auto' } = {}): Promise<CheckResult> {
  const c = Container.open(root, name);
  return lockContainer(c, async () => {
    const { criu, rootfs } = await checkSource(c, new MigrationJournal(root));
    const filesBytes = await treeBytes(rootfs);
    const formats = await offeredFormats(c);
    const there = await link.prepare({
      id: newMigrationId(), name, configJson: JSON.stringify(c.config), criuVersion: formatVersion(criu), filesBytes, pool: opts.pool, cpuinfo: await cpuinfoImage(c), checkOnly: true, mode: await chosenMode(opts.mode), formats,
    });
    return { name, to: link.peer, filesBytes, filesFormat: chosenFormat(there.format, formats, link.peer), targetCriu: there.criuVersion };
  }, { waitMs: 0 });
}

/** The mode a migration runs in: auto is pre-copy where this host tracks dirty memory, else stop-and-copy. */
async function chosenMode(mode: MigrateOptions['mode']): Promise<MigrationMode> {
  if (mode === 'stop' || mode === 'post') return mode;
  if (mode === 'pre') {
    await requireMemoryTracking();
    return 'pre';
  }
  return (await canTrackMemory()) ? 'pre' : 'stop';
}

async function checkSource(c: Container, journal: MigrationJournal) {
  const state = await reconcile(c);
  if (state.status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`, 'migrate moves a running container; a stopped one can be exported');
  const other = journal.inFlight(c.name, 'source');
  if (other) throw new BusyError(`container ${c.name} has an unsettled migration to ${other.peer} (${other.phase})`, `\`tsvz migrate resolve ${c.name}\` settles it`);
  const criu = await requireCriu('4.1');
  return { state, criu, rootfs: fs.realpathSync(c.paths.rootfs) };
}

/** CRIU's description of this CPU (cpuinfo.img), which the target checks before anything freezes. */
async function cpuinfoImage(c: Container): Promise<Buffer> {
  fs.mkdirSync(c.root.cacheDir, { recursive: true, mode: 0o700 });
  const dir = fs.mkdtempSync(path.join(c.root.cacheDir, 'cpuinfo-'));
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      await new CriuClient().cpuinfoDump(fd);
    } finally {
      fs.closeSync(fd);
    }
    return fs.readFileSync(path.join(dir, CPUINFO_IMAGE));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function transfer(
  c: Container, state: Awaited<ReturnType<typeof reconcile>>, rec: MigrationRecord, files: { passes: FilePasses; bytes: number }, cpuinfo: Buffer,
  link: TargetLink, opts: MigrateOptions, journal: MigrationJournal,
): Promise<Omit<MigrationResult, 'totalMs' | 'keptSource'>> {
  const phase = (p: string) => { trace(`migrate: ${p}`); opts.onPhase?.(p); };
  const { signal } = opts;
  // Each transfer's progress to the caller, and to the journal's side file for `migrate list` (once a second, and at its end).
  let noted = 0;
  const report = (p: TransferProgress) => {
    opts.onProgress?.(p);
    const now = performance.now();
    if (!p.done && now - noted < 1000) return;
    noted = now;
    void journal.noteProgress(rec.id, { what: p.what, bytes: p.bytes, total: p.total, bytesPerSec: p.bytesPerSec, done: p.done, at: new Date().toISOString() }).catch(() => undefined);
  };
  let pageMeter: ReturnType<typeof meter> | undefined;
  let lazyTotal = 0;
  const step = <T>(p: Promise<T>): Promise<T> => unlessCancelled(signal, p);
  const catalog = new CheckpointCatalog(c);
  const ckId = `migrate-${rec.id.slice(0, 12)}`;
  const post = rec.mode === 'post';
  const bridged = c.config.net.mode === 'bridge';
  let shipped: { filesBytes: number; changedFilesBytes: number; imagesBytes: number; restoreMs: number } | undefined;
  let hookError: unknown;
  let restoredAt: number | undefined;
  let pages: Promise<void> | undefined;
  let preCopied: PreCopyResult | undefined;
  /** Stop-and-copy: the memory's channel, and its failure once it failed (which then is what failed the dump). */
  let memoryLink: PageLink | undefined;
  let memoryFailure: unknown;
  let ours: number | undefined;
  const sent = new Sha256();
  // Until CRIU says it freezes the tree next (pre-dump), the time spent is CRIU's start, not the freeze.
  let freezeStart = performance.now();
  try {
    // The files go whole while the container runs; after the freeze only what changed since.
    phase(files.passes.format === 'tar' ? 'sending files (running)' : `sending files (running, ${files.passes.format} send)`);
    const first = await files.passes.running();
    const filesBytes = await step(link.sendFiles(rec.id, c.name, metered(first, 'files', files.bytes, report), signal));
    trace('migrate: files sent');
    // Pre-copy: the memory goes in rounds while the container runs; the final dump then sends what the last one left.
    if (rec.mode === 'pre') {
      preCopied = await preCopy(c, state, rec.id, link, { report, signal, onRound: (n) => phase(`pre-copy round ${n} (running)`) });
    }
    // Post-copy locks the network by unplugging the veth: CRIU's own lock would outlive a resumed tree.
    if (post && bridged) await unplugFromBridge(c.key);
    // The dump's page server socket is `criuEnd` (dumpContainer closes it); `ours` goes to the target over the Pages call.
    // Post-copy: the dump serves the pages from here. Stop-and-copy: it writes them to a page server there, never to a file here.
    let criuEnd: number;
    [ours, criuEnd] = streamSocketpair();
    if (!post) {
      const channel = (memoryLink = link.pages(rec.id, () => undefined));
      const memory = meter('memory', residentMemoryBytes(c.cgroups().pids()), report);
      pages = pump(ours, { ...channel, send: hashedSend(channel, sent, memory) }).then(() => memory.end());
      pages.catch((e: unknown) => { memoryFailure = e; });
    }
    phase(post ? 'freezing and dumping (memory stays here)' : 'freezing and dumping, memory to the target');
    await withContainerIntent(c, 'checkpoint', { id: ckId, leaveRunning: false }, (intent) => dumpContainer(c, state, catalog, {
      name: ckId,
      intent,
      tcpEstablished: bridged,
      onFreezing: () => {
        freezeStart = performance.now();
      },
      pageServer: post ? undefined : { socket: criuEnd },
      parent: preCopied?.lastDir && path.relative(catalog.dir(ckId), preCopied.lastDir),
      lazy: post ? {
        socket: criuEnd,
        configDir: c.root.cacheDir,
        onServing: () => {
          phase('starting there, memory following');
          const channel = link.pages(rec.id, (r) => {
            restoredAt = performance.now();
            if (shipped) shipped.restoreMs = r.restoreMs ?? 0;
            phase('running there, pulling its memory from here');
          });
          // A test's holds once the copy runs: on the pages (migrate:pages, CRIU's page server then waits
          // to write) or on the requests for them (migrate:requests, it waits to read).
          const counted = (data: Buffer) => {
            (pageMeter ??= meter('pages', lazyTotal, report)).add(data.length);
            return channel.send(data);
          };
          const send = (data: Buffer) => (restoredAt === undefined ? counted(data) : faultPoint('migrate:pages').then(() => counted(data)));
          const incoming = heldAfter(channel.incoming, () => restoredAt !== undefined, 'migrate:requests');
          pages = pump(ours!, { ...channel, send, incoming }, { onFailure: PAGE_SERVER_POISON });
          pages.catch(() => undefined);
        },
      } : undefined,
      onDumped: async (dir) => {
        try {
          // Stop-and-copy: every page is in the target's page server by now; its call ends once it has written them.
          if (!post) await step(pages!);
          await step(faultPause('migrate:dumped'));
          phase('sending the files changed since');
          const changes = await files.passes.frozen();
          const changesBytes = await step(link.sendFileChanges(rec.id, c.name, changes.removed, changes.stream, signal));
          trace(`migrate: file changes sent (${changesBytes} bytes, ${changes.removed.length} removed)`);
          if (post) lazyTotal = lazyBytes(dir);
          phase(post ? 'sending the checkpoint (no memory)' : 'sending the checkpoint, restoring there');
          const pageStream = post ? undefined : streamDigest(sent);
          // The rounds' images here hold no memory (it is on the target): the checkpoint does not link to them.
          fs.rmSync(path.join(dir, PARENT_LINK), { force: true });
          const { stream, bytes } = await archiveOf(c, dir, ckId, cpuinfo, opts.signer, pageStream, preCopied?.digests);
          trace('migrate: images hashed');
          const restored = await step(link.sendCheckpoint(rec.id, c.name, stream, signal));
          trace(post ? 'migrate: received there' : 'migrate: restored there');
          // The point of no return: the target holds the restored copy frozen (post-copy: the images, and it starts once pages flow).
          signal?.throwIfAborted();
          await journal.advance(rec, 'switching');
          await faultPoint('migrate:switching');
          const preCopyBytes = preCopied?.digests.reduce((n, d) => n + d.bytes, 0) ?? 0;
          shipped = { filesBytes: filesBytes + changesBytes, changedFilesBytes: changesBytes, imagesBytes: bytes + (pageStream?.bytes ?? 0) + preCopyBytes, restoreMs: restored.restoreMs ?? 0 };
          if (!post) restoredAt = performance.now();
        } catch (err) {
          hookError = err;
          throw err;
        }
      },
    }));
    if (pages && post) {
      await pages;
      pageMeter?.end();
    }
  } catch (err) {
    // A broken memory channel fails the dump (CRIU loses its page server): its failure is the cause. A dump
    // that failed by itself ends the channel after the fact: CRIU's reason is the cause.
    memoryLink?.close();
    const why = hookError ?? (post && pages ? await pages.then(() => err, (e: unknown) => e) : memoryFailure ?? err);
    // Post-copy: CRIU resumes the tree when its page server loses the link, before or after the target ran.
    const resumed = rec.phase !== 'switching' || (post && (await reconcile(c)).status === 'running');
    if (!resumed) throw err; // CRIU failed after the switch: resolve settles it
    if (post && c.config.net.mode === 'bridge') await plugIntoBridge(c.key, c.config.net).catch(() => undefined);
    await link.abort(rec.id, message(why)).catch(() => undefined);
    await journal.advance(rec, 'aborted', message(why));
    if (post && rec.phase === 'aborted' && restoredAt !== undefined) {
      throw new TsvzError(why instanceof TsvzError ? why.code : 'EUNAVAILABLE', `post-copy of ${c.name} failed after it started on ${link.peer}: ${message(why)}`, {
        hint: `its copy there was killed; ${c.name} resumed here from the moment of the freeze (what the copy did since is lost)`,
        cause: why,
      });
    }
    throw why;
  } finally {
    if (ours !== undefined && !pages) closeQuietly(ours);
  }
  const frozenMs = (restoredAt ?? performance.now()) - freezeStart;
  const lastPageMs = post ? performance.now() - freezeStart : undefined;
  phase('switching over');
  try {
    await commitWithRetry(link, rec.id);
  } catch (err) {
    throw new TsvzError('EUNAVAILABLE', `${c.name} was restored on ${link.peer} but the commit did not reach it: ${message(err)}`, {
      hint: `run \`tsvz migrate resolve ${c.name}\` here once ${link.peer} is reachable; its copy stays frozen until then`,
      cause: err,
    });
  }
  await journal.advance(rec, 'committed');
  const rounds = preCopied?.rounds.length ? { preCopyRounds: preCopied.rounds } : {};
  return { id: rec.id, name: c.name, to: link.peer, mode: post ? 'post-copy' : rounds.preCopyRounds ? 'pre-copy' : 'stop-and-copy', filesFormat: files.passes.format, ...shipped!, frozenMs, lastPageMs, ...rounds };
}

/**
 * The images of `dir` as a stream of a signed archive, with this host's
 * cpuinfo image for the target's CPU check and the digests of the memory
 * that went to its page servers (pre-copy's rounds, then the final
 * dump's); `bytes`: what its files hold.
 */
async function archiveOf(c: Container, dir: string, id: string, cpuinfo: Buffer, signer: ArchiveSigner, pageStream?: PageStreamDigest, preCopy?: PageStreamDigest[]): Promise<{ stream: Readable; bytes: number }> {
  fs.writeFileSync(path.join(dir, CPUINFO_IMAGE), cpuinfo, { mode: 0o600 });
  const meta: CheckpointMeta = {
    id,
    container: c.name,
    createdAt: new Date().toISOString(),
    criuVersion: formatVersion(await requireCriu('4.1')),
    kernel: os.release(),
    leaveRunning: false,
    tcpEstablished: c.config.net.mode === 'bridge',
    dumpMs: 0,
    sizeBytes: 0,
  };
  // The manifest (every file's sha256) goes first, signed; the target checks each file against it as it arrives.
  const manifest = { ...await checkpointManifest(dir, meta, c.config), ...(pageStream ? { pageStream } : {}), ...(preCopy?.length ? { preCopy } : {}) };
  return { stream: packCheckpoint(dir, manifest, signer, { frozen: true }), bytes: manifest.files.reduce((n, f) => n + f.size, 0) };
}

/**
 * `p`, or the signal's reason once it aborts (the call behind `p` is
 * cancelled by the same signal): a cancelled migration stops at once.
 */
function unlessCancelled<T>(signal: AbortSignal | undefined, p: Promise<T>): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const done = () => signal.removeEventListener('abort', onAbort);
    p.then((v) => { done(); resolve(v); }, (err: unknown) => { done(); reject(err); });
  });
}

/** `chunks`, stopped at fault point `point` (tests) once `armed()` says so. */
async function* heldAfter(chunks: AsyncIterable<Buffer>, armed: () => boolean, point: string): AsyncGenerator<Buffer> {
  for await (const data of chunks) {
    if (armed()) await faultPoint(point);
    yield data;
  }
}

async function commitWithRetry(link: TargetLink, id: string): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      return await link.commit(id);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200 * (i + 1)));
    }
  }
  throw last;
}

/**
 * Bytes of the files under `dir` (this filesystem only), for the target's
 * space check and the progress. The tree runs: an entry gone meanwhile
 * counts nothing. Asynchronous: a daemon driving a migration keeps serving.
 */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const dev = (await fs.promises.lstat(dir)).dev;
  const gone = (err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  };
  const walk = async (d: string): Promise<void> => {
    let entries: fs.Dirent[];
    try { entries = await fs.promises.readdir(d, { withFileTypes: true }); } catch (err) { return gone(err); }
    for (const e of entries) {
      const p = path.join(d, e.name);
      let st: fs.Stats;
      try { st = await fs.promises.lstat(p); } catch (err) { gone(err); continue; }
      if (st.dev !== dev) continue;
      if (st.isDirectory()) await walk(p);
      else total += st.size;
    }
  };
  await walk(dir);
  return total;
}

/** The target's choice, which must be one this host offered (a peer's answer is checked like any input). */
function chosenFormat(format: string | undefined, offered: SendFormat[], peer: string): SendFormat {
  const f = (format || 'tar') as SendFormat;
  if (!offered.includes(f)) throw new TsvzError('ECORRUPT', `${peer} chose a file transfer type this host did not offer: ${JSON.stringify(String(format).slice(0, 20))}`);
  return f;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
