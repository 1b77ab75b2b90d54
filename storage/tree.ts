import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { mountsUnder } from '../lib/mounts';
import { StorageError } from './errors';
import type { PoolUsage } from './driver';
import { compareText } from '../lib/compare';

/** Directory-tree helpers shared by the drivers that keep plain trees (dir) or need staging names. */

/**
 * Remove a tree (a whole rootfs: off the event loop); refuses when something
 * is mounted inside (rm would reach through into it).
 */
export async function removeTree(dir: string): Promise<void> {
  const mounts = mountsUnder(dir);
  if (mounts.length > 0) {
    throw new StorageError(`cannot remove ${dir}: ${mounts[0]} is mounted inside it`, { hint: 'stop the container using it (or unmount it) first' });
  }
  await fs.promises.rm(dir, { recursive: true, force: true });
}

/**
 * A name in `dir` nobody else uses, for work in progress: the leading "."
 * can't clash with a valid volume or snapshot name (those start with a
 * letter or digit); the pid tells a sweep whether its owner is still alive.
 */
export function stagingPath(dir: string, purpose: string): string {
  return path.join(dir, `.${purpose}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

/** A staging name whose process is gone (killed mid-operation): safe to remove. */
export function isStaleStaging(name: string): boolean {
  const m = /^\..*-(\d+)-[0-9a-f]{8}$/.exec(name);
  if (!m) return false;
  try {
    process.kill(Number(m[1]), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Size and use of the filesystem holding `dir` (its nearest existing parent when it is not made yet). */
export function filesystemUsage(dir: string): PoolUsage {
  let at = dir;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  const st = fs.statfsSync(at);
  return { sizeBytes: st.blocks * st.bsize, usedBytes: (st.blocks - st.bfree) * st.bsize };
}

/** A staging name of something removed (moved aside, then removed): garbage, whoever moved it. */
export function isTrash(name: string): boolean {
  return name.startsWith('.rm-') && /-\d+-[0-9a-f]{8}$/.test(name);
}

/** Entries of a directory that look like volumes/snapshots (not our hidden staging names). */
export function visibleEntries(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((e) => !e.startsWith('.')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Birth time when the filesystem records it, else the change time, as ISO 8601. */
export function createdAt(p: string): string | undefined {
  try {
    const st = fs.statSync(p);
    return (st.birthtimeMs > 0 ? st.birthtime : st.ctime).toISOString();
  } catch {
    return undefined;
  }
}

/** Names ordered by when `pathOf(name)` was created (birth time to the nanosecond, else ctime), then by name. */
export function byCreation(names: string[], pathOf: (name: string) => string): string[] {
  const born = new Map(names.map((n) => {
    const st = fs.statSync(pathOf(n), { bigint: true });
    return [n, st.birthtimeNs > 0n ? st.birthtimeNs : st.ctimeNs];
  }));
  return [...names].sort((a, b) => (born.get(a)! < born.get(b)! ? -1 : born.get(a)! > born.get(b)! ? 1 : compareText(a, b)));
}

export function isDirectory(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}
