import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import { withUndo } from '../lib/undo';
import { decompressedFile } from './compress';
import { emptyDestination, extractTar } from './extract';
import { ROOTFS_POLICY } from './policy';
import type { Refusal, Voice } from './refusal';

/**
 * The `tar:FILE` rootfs template: unpack a (possibly gzip- or
 * zstd-compressed) rootfs tarball into an empty directory, treating the
 * archive as hostile (ROOTFS_POLICY). Nothing it contains may write outside
 * the destination, escalate privileges on the host (setuid files, device
 * nodes) or exhaust the disk without bound.
 */

export interface ExtractLimits {
  /** Total entry data the archive may hold (default 8 GiB). */
  maxBytes?: number;
  /** Number of entries the archive may hold (default 1,000,000). */
  maxEntries?: number;
}

export interface ExtractReport {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Bytes of file data written. */
  bytes: number;
  /** Neutralised entries, e.g. "dev/sda: device node skipped". */
  skipped: string[];
}

const DEFAULT_MAX_BYTES = 8 * 1024 ** 3;
const DEFAULT_MAX_ENTRIES = 1_000_000;

/** Extract a tar (optionally compressed: detected by magic bytes) into destDir, which must exist and be empty. */
export async function extractTarball(archive: string, destDir: string, limits: ExtractLimits = {}): Promise<ExtractReport> {
  const max = resolveLimits(limits);
  const root = await emptyDestination(destDir, 'rootfs directory');
  const rootBefore = await fs.promises.lstat(root);
  const voice = rootfsVoice(archive);
  const input = await openTarball(archive);
  return withUndo(async (undo) => {
    // Unwound in reverse: empty the root first, then restore its own attributes (emptying changes its mtime).
    undo.add(`restore ${root} attributes`, () => restoreAttributes(root, rootBefore));
    undo.add(`empty ${root}`, () => emptyDir(root));
    const { stream } = await decompressedFile(input);
    const r = await extractTar(stream, root, { policy: ROOTFS_POLICY, voice, limits: max });
    return { files: r.files, dirs: r.dirs, symlinks: r.symlinks, hardlinks: r.hardlinks, bytes: r.bytes, skipped: r.skipped };
  });
}

/** A user's tarball: refusals are EINVAL, and read failures "unreadable tarball FILE: why" as tsvz always said. */
function rootfsVoice(archive: string): Voice {
  const unreadable = (why: string) => `unreadable tarball ${archive}: ${why}`;
  return {
    subject: `tarball ${archive}`,
    entries: 'tarball',
    origin: 'user',
    say: (r: Refusal) => {
      if (r.kind === 'truncated' || r.kind === 'corrupt') return unreadable(r.detail);
      if (r.kind === 'empty') return unreadable('no entries');
      return undefined;
    },
  };
}

function resolveLimits(limits: ExtractLimits): { maxBytes: number; maxEntries: number } {
  const max = { maxBytes: limits.maxBytes ?? DEFAULT_MAX_BYTES, maxEntries: limits.maxEntries ?? DEFAULT_MAX_ENTRIES };
  for (const [key, value] of Object.entries(max)) {
    if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError(`invalid tarball limit ${key}: ${value}`);
  }
  return max;
}

/** The tarball, opened once: everything is read through this descriptor (a pipe works too). */
async function openTarball(archive: string): Promise<fs.promises.FileHandle> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(archive, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`tarball ${archive} not found`);
    throw new InvalidArgumentError(`unreadable tarball ${archive}: ${(err as Error).message}`);
  }
  if ((await fh.stat()).isDirectory()) {
    await fh.close();
    throw new InvalidArgumentError(`unreadable tarball ${archive}: it is a directory`);
  }
  return fh;
}

/** Undo: the root was empty when we started, so everything in it is ours. */
async function emptyDir(root: string): Promise<void> {
  for (const name of await fs.promises.readdir(root)) await fs.promises.rm(path.join(root, name), { recursive: true, force: true });
}

/** Undo: a "./" entry may have changed the root's own attributes. */
async function restoreAttributes(root: string, st: fs.Stats): Promise<void> {
  await fs.promises.chown(root, st.uid, st.gid);
  await fs.promises.chmod(root, st.mode & 0o7777);
  await fs.promises.utimes(root, st.atime, st.mtime);
}
