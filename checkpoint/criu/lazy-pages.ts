import fs = require('node:fs');
import path = require('node:path');
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, TimeoutError } from '../../lib/errors';
import { recvPacket, socketpair, streamSocketpair } from '../../lib/seqpacket';
import { reapChild, spawnWithFds, Spawned, SpawnedExit } from '../../lib/spawn-fds';
import { CriuClient, CriuHooks, CriuOpts, SwrkLauncher, SwrkProcess } from './client';
import { CriuError } from './errors';
import { criuEnv } from './binary';

/*
 * Post-copy on one host: CRIU dumps a tree leaving its memory in the dump's
 * page server, and restores it from the same images while a `criu
 * lazy-pages` daemon pulls the pages from that server, each when the
 * restored tree first touches it (userfaultfd), the rest in the background.
 *
 * The page server and the daemon talk over a socketpair made here, so no
 * port is opened. Over RPC, CRIU takes ps.fd only for a dump that is not
 * lazy; for a lazy one the socket reaches the dump's swrk as an extra fd
 * named in a config file (`ps-socket`, CRIU's own option). The daemon has no
 * RPC request: it is the CLI.
 */

/** The fds CRIU sees: swrk has its RPC socket at 3, so the page server's socket comes next. */
const DUMP_PS_FD = 4;
const DAEMON_PS_FD = 3;
const DAEMON_STATUS_FD = 4;
/** How long the other steps get to settle after one failed, so the error named is the cause. */
const SETTLE_MS = 3000;

export interface LazyRestoreOptions {
  /**
   * Root of the tree to move; init of its own pid namespace, because the
   * dumped tree stays (frozen) until its last page is pulled and the
   * restored one must not need its pids.
   */
  pid: number;
  /** An empty directory for the images and the logs (dump.log, lazy-pages.log, restore.log). */
  imagesDir: string;
  client?: CriuClient;
  /** More options for the dump and the restore (not the images, the page server or lazy pages). */
  dump?: Partial<CriuOpts>;
  restore?: Partial<CriuOpts>;
  /** The dump's notifications (status-ready is used here and passed on). */
  dumpHooks?: CriuHooks;
  restoreHooks?: CriuHooks;
  restoreLauncher?: SwrkLauncher;
  /** From the start until every page was copied. */
  timeoutMs?: number;
}

export interface LazyRestoreResult {
  /** The restored root's host pid. */
  pid: number;
  /** Pages the daemon copied in and how many there were to copy, over the tree's processes (from lazy-pages.log). */
  pages: { copied: number; total: number };
  /** Milliseconds from the start until the page server served, the tree was restored (running), every page was copied. */
  times: { served: number; restored: number; done: number };
}

/**
 * What a lazy dump needs beyond its options: a config file naming the page
 * server's socket (`ps-socket`, CRIU's own option: over RPC ps.fd serves
 * only dumps that are not lazy) and a launcher that hands that socket to
 * swrk as DUMP_PS_FD. `configDir` must not be the images directory when the
 * images travel (the file is not an image).
 */
export function lazyDumpSetup(client: CriuClient, socket: number, configDir: string): { configFile: string; launcher: SwrkLauncher; spawned: () => SwrkProcess | undefined } {
  const configFile = path.join(configDir, 'lazy-dump.conf');
  fs.writeFileSync(configFile, `ps-socket ${DUMP_PS_FD}\n`, { mode: 0o600 });
  let swrk: SwrkProcess | undefined;
  const launcher: SwrkLauncher = (criuEnd, inherited) => {
    if (inherited.length > 0) throw new InvalidArgumentError('a lazy dump passes no inheritFd');
    return (swrk = spawnSwrk(client, criuEnd, [socket]));
  };
  return { configFile, launcher, spawned: () => swrk };
}

/** `criu swrk` with its RPC socket at 3 and `fds` after it; a failed spawn is an exit, as CriuClient's own launcher has it. */
function spawnSwrk(client: CriuClient, criuEnd: number, fds: number[]): SwrkProcess {
  try {
    return spawnWithFds(client.criuPath, ['swrk', '3'], [criuEnd, ...fds], criuEnv());
  } catch (error) {
    return { exited: Promise.resolve({ error: error as Error }), stderrTail: () => '' };
  }
}

/**
 * Starts `criu lazy-pages` on the images of `imagesDir`, its page server
 * reached through `socket` (a connected stream socket), its socket for the
 * restore in `workDir` (the restore's work directory). `ready` resolves once
 * it listens; `exited` once every page was copied (code 0) or it failed.
 */
export function startLazyPagesDaemon(o: { criuPath: string; imagesDir: string; workDir: string; socket: number; logFile: string }): { daemon: Spawned; ready: Promise<void> } {
  const [status, statusDaemon] = socketpair();
  let daemon: Spawned;
  try {
    daemon = spawnWithFds(
      o.criuPath,
      ['lazy-pages', '--page-server', '--ps-socket', String(DAEMON_PS_FD), '--status-fd', String(DAEMON_STATUS_FD),
        '-D', o.imagesDir, '-W', o.workDir, '-o', o.logFile, '-v4'],
      [o.socket, statusDaemon],
      criuEnv(),
    );
  } catch (err) {
    fs.closeSync(status);
    throw err;
  } finally {
    fs.closeSync(statusDaemon);
  }
  const logPath = path.isAbsolute(o.logFile) ? o.logFile : path.join(o.workDir, o.logFile);
  const ready = recvPacket(status).then(async (packet) => {
    if (packet) return;
    const exit = await daemon.exited;
    throw new CriuError('lazy-pages', { logPath, detail: `criu lazy-pages exited (${exit.signal ?? `exit ${exit.code}`}) before it was ready` });
  }).finally(() => fs.closeSync(status));
  ready.catch(() => undefined); // the caller races it with the daemon's exit
  return { daemon, ready };
}

type Settled<T> = { state: 'fulfilled'; value: T } | { state: 'rejected'; reason: unknown } | { state: 'pending' };

/** A promise whose outcome can be looked at without waiting. */
interface Tracked<T> {
  promise: Promise<T>;
  now(): Settled<T>;
}

function track<T>(p: Promise<T>): Tracked<T> {
  let s: Settled<T> = { state: 'pending' };
  p.then((value) => (s = { state: 'fulfilled', value }), (reason: unknown) => (s = { state: 'rejected', reason }));
  return { promise: p, now: () => s };
}

/**
 * p; or the first failure of another step (`failed`), since a failed step
 * can leave the others waiting for ever (a restore whose page server died
 * does not return); or a TimeoutError naming `what` once `deadline`
 * (performance.now()) has passed.
 */
async function by<T>(p: Promise<T>, failed: Promise<never>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`post-copy: ${what} took too long`)), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([p, failed, late]);
  } finally {
    clearTimeout(timer);
  }
}

function isPidNamespaceInit(pid: number): boolean {
  try {
    const nspid = /^NSpid:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1].trim().split(/\s+/);
    return !!nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1';
  } catch {
    return false;
  }
}

function kill(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** The daemon's per-process "UFFD transferred pages: (copied/total)" lines, summed. */
export function transferredPages(logPath: string): { copied: number; total: number } {
  let text = '';
  try {
    text = fs.readFileSync(logPath, 'utf8');
  } catch {
    // no log: nothing counted
  }
  let copied = 0;
  let total = 0;
  for (const m of text.matchAll(/UFFD transferred pages: \((\d+)\/(\d+)\)/g)) {
    copied += Number(m[1]);
    total += Number(m[2]);
  }
  return { copied, total };
}

/**
 * Dumps `pid`'s tree lazily and restores it from the same images with its
 * memory pulled from the dump's page server. Resolves once every page was
 * copied (the dumped tree is then gone). On failure the restored tree, if
 * any, is killed (CRIU resumes the dumped one), and the error is the first
 * failing step's CriuError: the page server's, which is the cause when the
 * daemon or the restore fail with it.
 */
export async function lazyRestore(o: LazyRestoreOptions): Promise<LazyRestoreResult> {
  if (!isPidNamespaceInit(o.pid)) {
    throw new InvalidArgumentError(`post-copy on one host needs the tree's root to be init of its own pid namespace; ${o.pid} is not`);
  }
  const client = o.client ?? new CriuClient();
  const imagesDir = path.resolve(o.imagesDir);
  const t0 = performance.now();
  const deadline = t0 + (o.timeoutMs ?? 60_000);
  const fds = new Set<number>();
  const own = (fd: number): number => (fds.add(fd), fd);
  const close = (fd: number): void => {
    if (fds.delete(fd)) fs.closeSync(fd);
  };

  const imagesDirFd = own(fs.openSync(imagesDir, 'r'));
  let psDump: number;
  let psDaemon: number;
  try {
    [psDump, psDaemon] = streamSocketpair().map(own);
  } catch (err) {
    close(imagesDirFd);
    throw err;
  }
  const lazyDump = lazyDumpSetup(client, psDump, imagesDir);
  const config = lazyDump.configFile;
  const dumpLauncher: SwrkLauncher = (criuEnd, inherited) => {
    const swrk = lazyDump.launcher(criuEnd, inherited);
    close(psDump);
    return swrk;
  };
  let restoreSwrk: SwrkProcess | undefined;
  const restoreLauncher: SwrkLauncher = (criuEnd, inherited) =>
    (restoreSwrk = o.restoreLauncher ? o.restoreLauncher(criuEnd, inherited) : spawnSwrk(client, criuEnd, inherited));

  let fail!: (err: unknown) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => undefined); // raced below; nobody else waits on it

  let served!: () => void;
  const serving = new Promise<void>((resolve) => (served = resolve));
  const dumped = track(
    client.dump(
      { ...o.dump, imagesDirFd, pid: o.pid, lazyPages: true, notifyScripts: true, configFile: config, logFile: 'dump.log' },
      {
        onNotify: async (script, ctx) => {
          if (script === 'status-ready') served();
          await o.dumpHooks?.onNotify?.(script, ctx);
        },
      },
      dumpLauncher,
    ),
  );
  dumped.promise.catch(fail);

  let daemon: Spawned | undefined;
  let daemonExit: Tracked<SpawnedExit> | undefined;
  let restored: Tracked<number> | undefined;
  const daemonLog = path.join(imagesDir, 'lazy-pages.log');
  const times = { served: 0, restored: 0, done: 0 };
  try {
    const early = dumped.promise.then(() => {
      throw new CriuError('dump', { detail: 'the lazy dump ended before its page server served' });
    });
    await by(Promise.race([serving, early]), failed, deadline, 'the dump');
    times.served = performance.now() - t0;

    const started = startLazyPagesDaemon({ criuPath: client.criuPath, imagesDir, workDir: imagesDir, socket: psDaemon, logFile: 'lazy-pages.log' });
    daemon = started.daemon;
    close(psDaemon);
    const exited = daemon.exited;
    daemonExit = track(exited);
    void exited.then((exit) => {
      if (exit.code !== 0) fail(new CriuError('lazy-pages', { logPath: daemonLog, detail: exit.signal ? `criu lazy-pages was killed by ${exit.signal}` : undefined }));
    });
    await by(started.ready, failed, deadline, 'the lazy-pages daemon to start');

    restored = track(client.restore({ ...o.restore, imagesDirFd, lazyPages: true, logFile: 'restore.log' }, o.restoreHooks, restoreLauncher));
    const pid = await by(restored.promise, failed, deadline, 'the restore');
    times.restored = performance.now() - t0;

    await by(exited, failed, deadline, 'the page transfer');
    await by(dumped.promise, failed, deadline, 'the page server to finish');
    times.done = performance.now() - t0;
    return { pid, pages: transferredPages(daemonLog), times };
  } catch (err) {
    // The dump and the daemon end by themselves once either fails (a restore may not): wait for them, then end what is left.
    await Promise.race([
      Promise.allSettled([dumped.promise, daemonExit?.promise]),
      new Promise((resolve) => setTimeout(resolve, SETTLE_MS)),
    ]);
    if (daemonExit?.now().state === 'pending') kill(daemon?.pid);
    if (dumped.now().state === 'pending') kill(lazyDump.spawned()?.pid);
    if (restored?.now().state === 'pending') kill(restoreSwrk?.pid);
    // The restored tree, whole or half made: CRIU logs its root's pid before the restore can fail.
    const r = restored?.now();
    const root = r?.state === 'fulfilled' ? r.value : restored && restoredRoot(path.join(imagesDir, 'restore.log'));
    if (root !== undefined) {
      kill(root);
      if (o.restore?.rstSibling) void reapChild(root); // ours to reap, as CRIU's sibling
    }
    throw cause(err, dumped.now(), daemonExit?.now(), daemonLog);
  } finally {
    for (const fd of [...fds]) close(fd);
  }
}

/** The host pid of the first task a restore forked (its root), from the restore log's debug lines. */
function restoredRoot(logPath: string): number | undefined {
  try {
    const m = /PID: real (\d+) virt \d+/.exec(fs.readFileSync(logPath, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The error to report: the page server's when it failed, else the daemon's, else what was caught. */
function cause(caught: unknown, dump: Settled<unknown>, daemon: Settled<SpawnedExit> | undefined, daemonLog: string): unknown {
  if (dump.state === 'rejected' && dump.reason instanceof CriuError) return dump.reason;
  if (daemon?.state === 'fulfilled' && daemon.value.code !== 0 && !(caught instanceof CriuError && caught.operation === 'lazy-pages')) {
    return new CriuError('lazy-pages', { logPath: daemonLog });
  }
  return caught;
}
