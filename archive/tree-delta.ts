import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { InvalidArgumentError, LimitError } from '../lib/errors';
import { extractTar } from './extract';
import { TREE_POLICY, type ExtractPolicy, type Limits } from './policy';
import type { Voice } from './refusal';
import { packTree, type UnpackReport } from './tree-tar';

/*
 * A tree sent twice: whole while it is in use, then only what changed since
 * (Incus sends a running container's rootfs with rsync twice the same way).
 * What changed is told by ctime, which every change of a file's data or
 * metadata sets and which no process can set back: an entry whose ctime is
 * at or after the first pass began, or that was not sent, goes again; an
 * entry that was sent and is gone, or a directory that became something
 * else or the other way round, is removed on the other side before the
 * changes are unpacked. What the first pass sent is what its packer wrote,
 * not a walk of its own: whatever the tree's users did meanwhile (a
 * directory swapped for a symlink included), the second pass leaves the
 * other side equal to the tree as it is now.
 */

/** ctime is kept at the kernel's coarse clock (a tick behind at most): a change just after the first pass began may carry a ctime just before it. */
const CTIME_SLACK_NS = 100_000_000n;
/** Bounds on a removal list from a peer. */
export const MAX_REMOVALS = 100_000;
const MAX_PATH = 4096;

export interface TreeIndex {
  /** Relative path -> is it a directory, and its ctime in nanoseconds. */
  entries: Map<string, { dir: boolean; ctimeNs: bigint }>;
}

/** What a first pass sent: relative path -> is it a directory. */
export interface SentTree {
  entries: Map<string, boolean>;
  /** When the pass began. */
  startedAtNs: bigint;
}

/** The first pass: `dir`, in use, as a tree stream (packTree's live mode), and `sent`, filled in as the stream is read. */
export function packTreeLive(dir: string): { stream: Readable; sent: SentTree } {
  // ctime is wall-clock time.
  const sent: SentTree = { entries: new Map(), startedAtNs: BigInt(Date.now()) * 1_000_000n };
  const stream = packTree(dir, { live: true, onEntry: (rel, isDir) => void sent.entries.set(rel, isDir) });
  return { stream, sent };
}

/** Every entry under `dir` (not `dir` itself), with its ctime; `dir` is not in use (a frozen container's). */
export async function indexTree(dir: string): Promise<TreeIndex> {
  const entries: TreeIndex['entries'] = new Map();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await fs.promises.readdir(path.join(dir, rel))) {
      const child = rel === '' ? name : `${rel}/${name}`;
      const st = await fs.promises.lstat(path.join(dir, child), { bigint: true });
      entries.set(child, { dir: st.isDirectory(), ctimeNs: st.ctimeNs });
      if (st.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return { entries };
}

/** What to send again (`changed`, for packTree's include) and what to remove there (`removed`, parents before their children never both). */
export function changesSince(sent: SentTree, now: TreeIndex): { changed: Set<string>; removed: string[] } {
  const since = sent.startedAtNs - CTIME_SLACK_NS;
  const changed = new Set<string>();
  for (const [rel, e] of now.entries) {
    const wasDir = sent.entries.get(rel);
    if (wasDir === undefined || wasDir !== e.dir || e.ctimeNs >= since) changed.add(rel);
  }
  const gone = new Set([...sent.entries].filter(([rel, isDir]) => now.entries.get(rel)?.dir !== isDir).map(([rel]) => rel));
  // A removed directory takes its children with it.
  const underGone = (rel: string): boolean => {
    for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) if (gone.has(rel.slice(0, i))) return true;
    return false;
  };
  return { changed, removed: [...gone].filter((rel) => !underGone(rel)).sort() };
}

/** The changed entries of `dir` as a tree stream (every directory too, for its attributes). */
export function packTreeChanges(dir: string, changed: Set<string>): Readable {
  return packTree(dir, { include: (rel) => changed.has(rel) });
}

/** A peer's changes stream: entries replace what is there (a directory never is: its removal comes first). */
const TREE_CHANGES_POLICY: Readonly<ExtractPolicy> = { ...TREE_POLICY, existing: 'replace' };
const CHANGES_VOICE: Voice = { subject: 'tar stream', entries: 'tar stream', origin: 'peer' };

/**
 * Apply a peer's changes to `dir`, a tree it sent whole before and which
 * nothing else writes: `removed` first (each checked as a path inside
 * `dir` whose parents are real directories, never followed through a
 * symlink), then the changes stream unpacked over what is there.
 */
export async function unpackTreeChanges(input: Readable, dir: string, removed: unknown, opts: { limits?: Partial<Limits> } = {}): Promise<UnpackReport & { removed: number }> {
  input.pause();
  let root: string;
  let paths: string[];
  try {
    root = await fs.promises.realpath(dir);
    paths = validRemovals(removed);
    for (const rel of paths) await removeInside(root, rel);
  } catch (err) {
    input.destroy();
    throw err;
  }
  const report = await extractTar(input, root, { policy: TREE_CHANGES_POLICY, voice: CHANGES_VOICE, limits: opts.limits });
  return { entries: report.entries, bytes: report.bytes, removed: paths.length };
}

function validRemovals(removed: unknown): string[] {
  if (!Array.isArray(removed)) throw new InvalidArgumentError('the removals sent are not a list');
  if (removed.length > MAX_REMOVALS) throw new LimitError(`${removed.length} removals are over ${MAX_REMOVALS}`);
  return removed.map((rel) => {
    if (typeof rel !== 'string' || rel.length === 0 || rel.length > MAX_PATH || rel.includes('\0') || rel.startsWith('/')
      || rel.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new InvalidArgumentError(`invalid path to remove ${JSON.stringify(String(rel).slice(0, 60))}`, 'a removal is a relative path inside the tree');
    }
    return rel;
  });
}

/** Remove `rel` under `root` if it is there; every parent must be a real directory (lstat), so nothing outside is reached. */
async function removeInside(root: string, rel: string): Promise<void> {
  const parts = rel.split('/');
  let at = root;
  for (const part of parts.slice(0, -1)) {
    at = path.join(at, part);
    let st: fs.Stats;
    try {
      st = await fs.promises.lstat(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // gone with a parent already
      throw err;
    }
    if (!st.isDirectory()) return; // a parent that is no directory holds nothing to remove
  }
  // rm neither follows a symlink it removes nor one inside a directory it empties.
  await fs.promises.rm(path.join(at, parts[parts.length - 1]), { recursive: true, force: true });
}
