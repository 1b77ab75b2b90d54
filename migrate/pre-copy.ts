import fs = require('node:fs');
import path = require('node:path');
import { Sha256 } from '../archive/digest';
import { MAX_PRE_COPY_ROUNDS, type PageStreamDigest } from '../checkpoint/archive';
import { CriuClient } from '../checkpoint/criu/client';
import { preDumpContainer } from '../checkpoint/pre-dump';
import { NotSupportedError } from '../lib/errors';
import { residentMemoryBytes } from '../lib/proc';
import { streamSocketpair } from '../lib/seqpacket';
import { trace } from '../lib/trace';
import type { Container } from '../runtime/container';
import { isFrozen } from '../runtime/cgroups/freezer';
import type { ContainerState } from '../runtime/state';
import { pump } from './page-pump';
import { hashedSend, roundDir, streamDigest } from './page-stream';
import { meter, TransferProgress } from './progress';
import type { TargetLink } from './source';

/*
 * Iterative pre-copy (P.Haul's rule): while the container runs, each round
 * sends the pages written since the round before, tracked by the kernel's
 * soft-dirty bits, into a page server on the target; the final dump, the
 * only freeze that counts, then sends only what the last round left. The
 * rounds stop when one writes under MIN_PAGES pages, writes more than the
 * one before (the workload dirties memory faster than it goes), or after
 * MAX_PRE_COPY_ROUNDS.
 */

/** A round that writes fewer pages than this leaves too little for another round to be worth its freeze. */
export const MIN_PAGES = 64;

export interface PreCopyRound {
  round: number;
  pagesWritten: number;
  /** The stream's bytes (what the target's page server got). */
  bytes: number;
  ms: number;
  /** CRIU's freeze of the tree during the round, while it noted the dirty pages. */
  frozenMs: number;
}

/** Whether another round follows the rounds so far (their pages written, in order). */
export function anotherRound(written: number[]): boolean {
  const last = written.at(-1);
  if (last === undefined) return true;
  if (written.length >= MAX_PRE_COPY_ROUNDS || last < MIN_PAGES) return false;
  return written.length < 2 || last <= written.at(-2)!;
}

/** Whether this host's CRIU and kernel can track dirty memory (CRIU's mem_track probe): pre-copy needs it. */
export async function canTrackMemory(): Promise<boolean> {
  try {
    return (await new CriuClient().featureCheck({ memTrack: true })).memTrack === true;
  } catch {
    return false;
  }
}

/** `--mode pre` on a host that cannot: refused before anything is sent. */
export async function requireMemoryTracking(): Promise<void> {
  if (!(await canTrackMemory())) {
    throw new NotSupportedError('pre-copy needs dirty memory tracking, which this host lacks (the kernel has no soft-dirty bits: CRIU\'s mem_track check fails)', 'use --mode stop, or auto (which picks stop-and-copy on this host)');
  }
}

/** Where a migration's rounds keep CRIU's records here (the memory is on the target): inside the container's directory. */
export function preCopyDir(c: Container, id: string): string {
  return path.join(c.paths.dir, `migrate-pre-${id.slice(0, 12)}`);
}

export function releasePreCopyImages(c: Container, id: string): void {
  fs.rmSync(preCopyDir(c, id), { recursive: true, force: true });
}

export interface PreCopyResult {
  rounds: PreCopyRound[];
  /** Each round's page stream as sent, for the signed manifest. */
  digests: PageStreamDigest[];
  /** The last round's directory: the final dump's parent (none when no round ran). */
  lastDir?: string;
}

/**
 * The rounds of pre-copy for migration `id`, before the final dump. A
 * frozen container's memory does not change: it gets no rounds. A failed
 * round fails the migration (CRIU has thawed the tree; it runs on).
 * `signal` cuts the round's channel, so CRIU's pre-dump fails at once; the
 * promise settles only once CRIU is done with the tree.
 */
export async function preCopy(c: Container, state: ContainerState, id: string, link: TargetLink, o: { onRound?: (n: number) => void; report: (p: TransferProgress) => void; signal?: AbortSignal }): Promise<PreCopyResult> {
  const result: PreCopyResult = { rounds: [], digests: [] };
  if (isFrozen(c.cgroups())) return result;
  const base = preCopyDir(c, id);
  fs.rmSync(base, { recursive: true, force: true });
  fs.mkdirSync(base, { mode: 0o700 });
  let estimate = residentMemoryBytes(c.cgroups().pids());
  while (anotherRound(result.rounds.map((r) => r.pagesWritten))) {
    o.signal?.throwIfAborted();
    const n = result.rounds.length + 1;
    o.onRound?.(n);
    const dir = path.join(base, roundDir(n));
    fs.mkdirSync(dir, { mode: 0o700 });
    const t0 = performance.now();
    const sent = new Sha256();
    const memory = meter('memory', estimate, o.report);
    const [ours, criuEnd] = streamSocketpair();
    const channel = link.pages(id, () => undefined, n);
    // The pump owns `ours` from here; it ends once the target's page server has written the round.
    let memoryFailure: unknown;
    const pages = pump(ours, { ...channel, send: hashedSend(channel, sent, memory) });
    pages.catch((e: unknown) => { memoryFailure = e; });
    const cut = () => channel.close();
    o.signal?.addEventListener('abort', cut, { once: true });
    let stats: Awaited<ReturnType<typeof preDumpContainer>>;
    try {
      stats = await preDumpContainer(c, state, { dir, parent: n === 1 ? undefined : `../${roundDir(n - 1)}`, socket: criuEnd, logName: `pre-dump-${id.slice(0, 12)}-${n}.log` });
      await pages;
    } catch (err) {
      channel.close();
      o.signal?.throwIfAborted();
      // A broken channel fails the round (CRIU loses its page server): its failure is the cause.
      throw memoryFailure ?? err;
    } finally {
      o.signal?.removeEventListener('abort', cut);
    }
    memory.end();
    const round: PreCopyRound = { round: n, pagesWritten: stats?.pagesWritten ?? 0, bytes: sent.size, ms: performance.now() - t0, frozenMs: (stats?.frozenUs ?? 0) / 1000 };
    trace(`migrate: pre-copy round ${n}: ${round.pagesWritten} pages, ${round.bytes} bytes, ${round.ms.toFixed(0)} ms (frozen ${round.frozenMs.toFixed(0)} ms)`);
    result.rounds.push(round);
    result.digests.push(streamDigest(sent));
    result.lastDir = dir;
    estimate = round.bytes;
    // Without CRIU's statistics there is nothing to judge the next round by: the final dump follows.
    if (!stats) break;
  }
  return result;
}
