import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { performance } from 'node:perf_hooks';
import { describeError } from '../../lib/errors';
import { sleep } from '../../lib/poll';
import { findCommand } from '../../lib/process';
import { reapChild, spawnWithFds, Spawned } from '../../lib/spawn-fds';
import { CriuClient } from './client';
import { CriuError } from './errors';
import { lazyRestore } from './lazy-pages';

/*
 * Whether post-copy works with this CRIU on this host, found by doing it:
 * FEATURE_CHECK's lazy_pages only says that userfaultfd is there, and an
 * unpatched CRIU says yes on hosts where root lacks CAP_SYS_RESOURCE while
 * its page server cannot serve a single page (docs/criu-build.md). The probe
 * moves a small shell lazily (lazy-pages.ts) and has it checksum its memory
 * after the move.
 */

/** What the shell holds: seq 1 N is about 6 bytes a number, so some 40 pages of heap. */
const NUMBERS = 30000;
/** The shell ends by itself after about a minute, so a probe killed halfway leaves nothing running for long. */
const LIFETIME_TICKS = 1200;
const TOOLS = ['env', 'unshare', 'setsid', 'sh', 'seq', 'cksum', 'sleep'];

export interface LazyPagesVerdict {
  ok: boolean;
  /** Why not, in CRIU's words where CRIU failed (the first Error line of the failing step's log). */
  reason?: string;
  /** Pages the restored process pulled from the page server, and how many there were. */
  pages?: { copied: number; total: number };
  /** The whole probe, in milliseconds. */
  ms: number;
  /** The CRIU binary probed. */
  criu: string;
}

export interface LazyPagesProbeOptions {
  client?: CriuClient;
  /** Where the probe's scratch directory goes (default: the OS's temp dir); removed afterwards. */
  parentDir?: string;
  timeoutMs?: number;
}

/**
 * Restores a tiny process lazily and says whether that worked, and if not why.
 * Never throws for a failure of the feature: that is a `no`.
 */
export async function probeLazyPages(opts: LazyPagesProbeOptions = {}): Promise<LazyPagesVerdict> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const client = opts.client ?? new CriuClient(undefined, timeoutMs);
  const t0 = performance.now();
  const verdict = (ok: boolean, extra: Partial<LazyPagesVerdict> = {}): LazyPagesVerdict => ({
    ok, ...extra, ms: Math.round(performance.now() - t0), criu: client.criuPath,
  });

  if (process.getuid?.() !== 0) return verdict(false, { reason: 'post-copy needs root (CRIU dumps and restores processes)' });
  const missing = TOOLS.filter((t) => !findCommand(t));
  if (missing.length > 0) return verdict(false, { reason: `the probe needs ${missing.join(', ')}` });
  try {
    const features = await client.featureCheck({ lazyPages: true });
    if (!features.lazyPages) return verdict(false, { reason: 'CRIU says lazy pages are not available here (userfaultfd)' });
  } catch (err) {
    return verdict(false, { reason: reasonOf(err) });
  }

  const dir = fs.mkdtempSync(path.join(opts.parentDir ?? os.tmpdir(), 'tsvz-lazy-probe-'));
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  let tiny: Spawned | undefined;
  let source: number | undefined;
  let restored: number | undefined;
  try {
    tiny = startTiny(dir);
    source = await tinyPid(dir, tiny, performance.now() + timeoutMs);
    const before = fs.readFileSync(path.join(dir, 'before'), 'utf8');
    const moved = await lazyRestore({
      pid: source, imagesDir: images, client, timeoutMs,
      dump: { networkLock: 'SKIP' },
      restore: { rstSibling: true, networkLock: 'SKIP' },
    });
    restored = moved.pid;
    process.kill(restored, 'SIGUSR1');
    const after = await waitForFile(path.join(dir, 'after'), performance.now() + 5000);
    if (after === undefined) return verdict(false, { reason: 'the restored process did not answer after its pages were copied', pages: moved.pages });
    if (after !== before) {
      return verdict(false, { reason: `the restored process's memory differs from the dumped one's (cksum ${after.trim()}, was ${before.trim()})`, pages: moved.pages });
    }
    if (moved.pages.copied === 0) return verdict(false, { reason: 'no page was copied lazily', pages: moved.pages });
    return verdict(true, { pages: moved.pages });
  } catch (err) {
    return verdict(false, { reason: reasonOf(err) });
  } finally {
    // The shell first, dumped (resumed after a failure) or restored: its pid namespace goes with it, and unshare reaps its own.
    await killAll([source, restored].filter((pid): pid is number => pid !== undefined && names(pid, dir)));
    if (restored !== undefined) await reapChild(restored);
    if (tiny) await endUnshare(tiny);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** CRIU's own words where it failed; else the error's message. */
function reasonOf(err: unknown): string {
  if (err instanceof CriuError) {
    const line = err.errorLines[0] ?? err.crErrmsg;
    if (line) return `criu ${err.operation}: ${line}`;
  }
  return describeError(err);
}

/**
 * Starts a shell that is init of a new pid namespace and session leader (as
 * CRIU wants a tree), holding NUMBERS numbers in memory, with their checksum
 * in <dir>/before and, on SIGUSR1, the checksum it computes again in
 * <dir>/after. It writes its host pid to <dir>/pid (/proc is the host's, so
 * /proc/self/stat names it). Its environment is empty: images hold a
 * process's memory. Returns its unshare.
 */
function startTiny(dir: string): Spawned {
  const script = [
    'cd / && exec </dev/null >/dev/null 2>&1',
    `read -r pid rest </proc/self/stat && echo "$pid" >${dir}/pid`,
    `x=$(seq 1 ${NUMBERS})`,
    `trap 'printf %s "$x" | cksum >${dir}/after.tmp && mv ${dir}/after.tmp ${dir}/after' USR1`,
    `printf %s "$x" | cksum >${dir}/before.tmp && mv ${dir}/before.tmp ${dir}/before`,
    `n=0; while [ $n -lt ${LIFETIME_TICKS} ]; do sleep 0.05; n=$((n+1)); done`,
  ].join('\n');
  const unshare = spawnWithFds('env', ['-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'unshare', '--pid', '--fork', 'setsid', 'sh', '-c', script], []);
  void unshare.exited; // reaped when it ends
  return unshare;
}

/** The shell's host pid once it holds its numbers; fails if its unshare ends first or time runs out. */
async function tinyPid(dir: string, unshare: Spawned, deadline: number): Promise<number> {
  let ended = false;
  void unshare.exited.then(() => (ended = true));
  for (;;) {
    const pid = Number(fs.existsSync(path.join(dir, 'before')) && fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
    if (pid > 0) return pid;
    if (ended) throw new Error(`the probe's shell ended before it was ready: ${unshare.stderrTail().trim()}`);
    if (performance.now() > deadline) throw new Error("the probe's shell did not start");
    await sleep(10);
  }
}

async function waitForFile(file: string, deadline: number): Promise<string | undefined> {
  while (performance.now() < deadline) {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      await sleep(10);
    }
  }
  return undefined;
}

/** Waits a little for unshare to end with its shell, then kills it (only while it is unreaped: its pid is still its own). */
async function endUnshare(unshare: Spawned): Promise<void> {
  let ended = false;
  const exited = unshare.exited.then(() => (ended = true));
  await Promise.race([exited, sleep(2000)]);
  if (!ended) {
    process.kill(unshare.pid, 'SIGKILL');
    await exited;
  }
}

/** Whether `pid` runs and its command line names `dir` (not a reused pid). */
function names(pid: number, dir: string): boolean {
  try {
    return running(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

function running(pid: number): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** SIGKILLs `pids` and waits (a little) until none of them runs. */
async function killAll(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const deadline = performance.now() + 2000; pids.some(running) && performance.now() < deadline;) await sleep(10);
}
