import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { timeSlicer } from '../lib/poll';
import { run } from '../lib/process';

/**
 * Copying a tree (dir pools' snapshots, clones and rollbacks; the default
 * pool's too) keeping owners, modes, timestamps, xattrs, hardlinks, sparse
 * files and device nodes, sharing extents where the filesystem can (btrfs,
 * xfs: reflinks). `dst` must not exist.
 *
 * `cp -a` copies one file at a time, and a big file's copy is bound by one
 * core (the kernel's copy_file_range). When big files hold most of the
 * data, they are copied first by parallel `cp -a` workers (one per core,
 * up to MAX_WORKERS); then one `cp -a` that skips existing files copies
 * everything else into the same tree and sets every directory's
 * attributes, the ones the workers' parents were made with included. Files with more than one link stay with that last `cp -a`,
 * which is what keeps hardlinks together.
 */

const CP = ['-a', '--reflink=auto', '--sparse=auto'];
/** A copy never runs on, outside its operation's lock, after the operation was killed. */
const DIE_WITH_US = { dieWithParent: true };
/** Files this big go to the parallel workers... */
const BIG_FILE_BYTES = 32 * 1024 ** 2;
/** ...when together they are worth the walk and the extra processes. */
const PARALLEL_MIN_BYTES = 256 * 1024 ** 2;
const MAX_WORKERS = 4;
/**
 * Looking for big files lstat's every file (about 5 µs each here): a tree of
 * many small files (a distribution's rootfs: 10,000 and more) is copied by
 * one `cp -a` rather than walked for longer than this.
 */
const WALK_BUDGET_MS = 25;

export async function copyTree(src: string, dst: string): Promise<void> {
  const plan = await parallelPlan(src);
  if (plan.length === 0) {
    await run('cp', [...CP, '--no-target-directory', '--', src, dst], DIE_WITH_US);
    return;
  }
  fs.mkdirSync(dst, { mode: 0o700 });
  for (const dir of new Set(plan.flat().map((f) => path.dirname(f.rel)))) fs.mkdirSync(path.join(dst, dir), { recursive: true, mode: 0o700 });
  const results = await Promise.allSettled(plan.map(async (files) => {
    for (const f of files) await run('cp', [...CP, '--no-target-directory', '--', path.join(src, f.rel), path.join(dst, f.rel)], DIE_WITH_US);
  }));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  await run('cp', [...CP, await skipExisting(), '--', `${src}/.`, dst], DIE_WITH_US);
}

/** The big files of `src`, dealt out to parallel workers; none when a plain `cp -a` will do. */
export async function parallelPlan(src: string, workers = Math.min(MAX_WORKERS, os.availableParallelism())): Promise<BigFile[][]> {
  if (workers < 2) return [];
  const big = await bigFiles(src, Date.now() + WALK_BUDGET_MS);
  if (!big || big.reduce((sum, f) => sum + f.size, 0) < PARALLEL_MIN_BYTES) return [];
  return shares(big, workers);
}

export interface BigFile {
  /** Path relative to the tree's root. */
  rel: string;
  size: number;
}

/**
 * Regular files of BIG_FILE_BYTES or more with a single link, biggest first;
 * undefined past `deadline`. Synchronous calls (an lstat through the thread
 * pool costs several times one made here), yielding between directories.
 */
async function bigFiles(root: string, deadline: number): Promise<BigFile[] | undefined> {
  const found: BigFile[] = [];
  const dirs = [''];
  const slice = timeSlicer();
  for (let rel = dirs.pop(); rel !== undefined; rel = dirs.pop()) {
    if (Date.now() > deadline) return undefined;
    await slice();
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.join(rel, e.name);
      if (e.isDirectory()) dirs.push(child);
      else if (e.isFile()) {
        const st = fs.lstatSync(path.join(root, child));
        if (st.size >= BIG_FILE_BYTES && st.nlink === 1) found.push({ rel: child, size: st.size });
      }
    }
  }
  return found.sort((a, b) => b.size - a.size);
}

/** The files dealt out to `n` workers, each to the least loaded one so far. */
function shares(files: BigFile[], n: number): BigFile[][] {
  const out = Array.from({ length: n }, () => ({ bytes: 0, files: [] as BigFile[] }));
  for (const f of files) {
    const least = out.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    least.files.push(f);
    least.bytes += f.size;
  }
  return out.map((s) => s.files).filter((files) => files.length > 0);
}

let skipOption: string | undefined;

/**
 * cp's "leave existing files alone": --update=none since coreutils 9.3 (its
 * -n then reports the skips as a failure), -n before (Debian 12 has 9.1).
 */
async function skipExisting(): Promise<string> {
  if (skipOption === undefined) {
    const help = (await run('cp', ['--help'], { allowFail: true })).stdout;
    skipOption = help.includes('--update[=UPDATE]') ? '--update=none' : '-n';
  }
  return skipOption;
}
