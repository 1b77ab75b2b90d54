import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { NotSupportedError } from '../lib/errors';
import { readXattrs } from '../lib/libc-fs';
import { emptyDestination, extractTar } from './extract';
import { splitDev } from './nodes';
import { paxRecords } from './pax';
import { TREE_POLICY, type Limits } from './policy';
import type { Voice } from './refusal';
import { TarWriter, type TarHeader } from './tar-writer';

/**
 * The universal send format: a pax tar stream of a whole tree, which any two
 * drivers can exchange (Incus's rsync/tar fallback). It carries contents,
 * modes (setuid included: this is a rootfs, not an untrusted download),
 * owners, mtimes (to the nanosecond), symlinks, hardlinks, device nodes,
 * fifos and extended attributes (ACLs and file capabilities are xattrs
 * too); see pax.ts for the records beyond ustar.
 *
 * Not carried: sockets (their servers recreate them), atimes, the holes of
 * sparse files on the wire (zeros are sent; the receiver punches them back
 * by skipping zero blocks), file names that are not valid UTF-8 (refused
 * with an error rather than mangled).
 *
 * Both ends are the archive stack's writer and extractor (TREE_POLICY), so
 * the stream can go through any Writable/Readable: a pipe to another pool,
 * a compression stage, a socket to another host.
 */

/** A stream from another pool or host: damage in it is ECORRUPT, not the user's fault. */
const TREE_VOICE: Voice = { subject: 'tar stream', entries: 'tar stream', origin: 'peer' };

export interface PackOptions {
  onClose?: () => void | Promise<void>;
  /** Which non-directories go in (all when absent); every directory does, for its attributes and its children. */
  include?: (rel: string) => boolean;
  /**
   * `dir` is in use (a running container's): an entry gone before it is
   * read is left out, and a file whose size changes while it is read goes
   * at the size it had when its header was written (cut, or padded with
   * zeros). A second pass of what changed (tree-delta) puts both right.
   */
  live?: boolean;
  /** Told of each entry as it goes into the stream (not the root "."). */
  onEntry?: (rel: string, dir: boolean) => void;
}

/**
 * A tar stream of `dir` (the root itself is the entry "."). `onClose` (e.g.
 * unmount a snapshot) runs as soon as nothing more is read from `dir`: when the
 * last file is packed (before the reader has all of it), or at once when the
 * reader destroys the stream or packing fails. A reader that goes away has
 * `dir` released before destroy() returns, unless a file under it is still
 * open: then onClose fails and is run again once the packer has let go. So
 * onClose must be idempotent.
 */
export function packTree(dir: string, opts: PackOptions = {}): Readable {
  let running: Promise<void> = Promise.resolve();
  let cleanup: Promise<void> | undefined;
  const finish = (err?: Error): Promise<void> => {
    return (cleanup ??= (async () => {
      try {
        await opts.onClose?.(); // a synchronous onClose has run when this returns
      } catch {
        await running.catch(() => undefined); // the packer may still hold a file under dir
        await opts.onClose?.();
      }
    })().catch((cleanupErr: Error) => void writer.destroy(err ?? cleanupErr)));
  };
  const writer = new TarWriter({ onReaderGone: (err) => void finish(err) });
  running = new Packer(dir, writer, opts).run();
  running.then(
    () => {
      writer.finish();
      void finish();
    },
    (err) => {
      const e = err instanceof Error ? err : new Error(String(err));
      writer.destroy(e);
      void finish(e);
    },
  );
  return writer.readable;
}

class Packer {
  /** "dev:ino" of files with several links -> the name they were first sent under. */
  private readonly linked = new Map<string, string>();

  constructor(private readonly root: string, private readonly writer: TarWriter, private readonly opts: PackOptions) {}

  async run(): Promise<void> {
    await this.add('.');
  }

  private async add(rel: string): Promise<void> {
    const abs = path.join(this.root, rel);
    const st = await this.unlessGone(fs.promises.lstat(abs, { bigint: true }));
    if (!st) return;
    if (this.opts.include && !st.isDirectory() && !this.opts.include(rel)) return;
    if (rel !== '.') this.opts.onEntry?.(rel, st.isDirectory());
    // The mode keeps its type bits: tar-stream would put its default in place of a bare 0.
    const header: TarHeader = { name: rel, mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), mtime: new Date(Number(st.mtimeMs)) };
    const pax = paxRecords(st, readXattrs(abs) ?? []);
    if (pax) header.pax = pax;

    if (st.isDirectory()) {
      await this.writer.add({ ...header, type: 'directory' });
      for (const child of (await this.unlessGone(this.children(abs, rel))) ?? []) await this.add(rel === '.' ? child : `${rel}/${child}`);
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? this.linked.get(key) : undefined;
      if (first !== undefined) return this.writer.add({ ...header, type: 'link', linkname: first });
      if (st.nlink > 1n) this.linked.set(key, rel);
      const size = Number(st.size);
      await this.writer.add({ ...header, type: 'file', size }, this.opts.live ? readAtSize(abs, size) : fs.createReadStream(abs));
    } else if (st.isSymbolicLink()) {
      const linkname = await this.unlessGone(fs.promises.readlink(abs));
      if (linkname !== undefined) await this.writer.add({ ...header, type: 'symlink', linkname });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const [devmajor, devminor] = splitDev(st.rdev);
      await this.writer.add({ ...header, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor, devminor });
    } else if (st.isFIFO()) {
      await this.writer.add({ ...header, type: 'fifo' });
    }
    // sockets: skipped (see above)
  }

  /** What `p` gives, or undefined when a live tree's entry went away first. */
  private async unlessGone<T>(p: Promise<T>): Promise<T | undefined> {
    try {
      return await p;
    } catch (err) {
      if (this.opts.live && isGone(err)) return undefined;
      throw err;
    }
  }

  /** Child names in a stable order; a name that is not UTF-8 can't be carried faithfully. */
  private async children(abs: string, rel: string): Promise<string[]> {
    const raw = await fs.promises.readdir(abs, { encoding: 'buffer' });
    return raw
      .map((name) => {
        const text = name.toString('utf8');
        if (!Buffer.from(text, 'utf8').equals(name)) {
          throw new NotSupportedError(`cannot send ${path.join(rel, text)}: file name is not valid UTF-8`, 'rename it, or use a native send format');
        }
        return text;
      })
      .sort();
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Opened without following a final symlink, and never waiting on a fifo put there since the lstat. */
const LIVE_OPEN = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY;

/**
 * `size` bytes of the file at `abs`: what it holds up to there, zeros past
 * its end (all zeros when it is gone or is no longer a regular file).
 */
async function* readAtSize(abs: string, size: number): AsyncGenerator<Buffer> {
  let left = size;
  let file: fs.promises.FileHandle | undefined;
  try {
    file = await fs.promises.open(abs, LIVE_OPEN);
    if (!(await file.stat()).isFile()) {
      await file.close();
      file = undefined;
    }
  } catch (err) {
    if (!isGone(err) && (err as NodeJS.ErrnoException).code !== 'ELOOP') throw err;
  }
  try {
    while (file && left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(left, READ_CHUNK));
      const { bytesRead } = await file.read(buf, 0, buf.length, size - left);
      if (bytesRead === 0) break;
      left -= bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await file?.close();
  }
  for (; left > 0; left -= READ_CHUNK) yield Buffer.alloc(Math.min(left, READ_CHUNK));
}

const READ_CHUNK = 256 * 1024;

export interface UnpackReport {
  entries: number;
  /** File bytes received (holes included). */
  bytes: number;
}

/**
 * Unpack a stream from packTree into `dir`, an existing empty directory (the
 * stream's "." entry sets the directory's own attributes). On failure the
 * caller removes what was written (the drivers delete the new volume).
 * Unlimited unless `limits` says otherwise: a volume is as big as its pool
 * lets it be.
 */
export async function unpackTree(input: Readable, dir: string, opts: { limits?: Partial<Limits> } = {}): Promise<UnpackReport> {
  input.pause(); // a flowing stream would lose data to its other listeners while we check dir
  let root: string;
  try {
    root = await emptyDestination(dir, 'volume directory');
  } catch (err) {
    input.destroy();
    throw err;
  }
  const report = await extractTar(input, root, { policy: TREE_POLICY, voice: TREE_VOICE, limits: opts.limits });
  return { entries: report.entries, bytes: report.bytes };
}
