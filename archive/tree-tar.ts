import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs = require('node:fs');
import path = require('node:path');
import { finished } from 'node:stream/promises';
import { PassThrough, Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { SystemError } from '../lib/errors';
import { findCommand } from '../lib/process';
import { StorageError } from '../storage/errors';
import { readXattrs, setTimesNs, setXattr, ERRNO_ENOTSUP } from '../lib/libc-fs';

/**
 * The universal send format: a pax tar stream of a whole tree, which any two
 * drivers can exchange (Incus's rsync/tar fallback). It carries contents,
 * modes (setuid included: this is a rootfs, not an untrusted download),
 * owners, mtimes (to ~1 µs: utimes takes a double), symlinks, hardlinks,
 * device nodes, fifos and extended attributes (ACLs and file capabilities
 * are xattrs too).
 *
 * Not carried: sockets (their servers recreate them), atimes, the holes of
 * sparse files on the wire (zeros are sent; the receiver punches them back
 * by skipping zero blocks), file names that are not valid UTF-8 (refused
 * with an error rather than mangled).
 *
 * Extensions, in pax records: `mtime` (standard, with nanoseconds), `uid` /
 * `gid` (standard, when too big for the header), `TSVZ.xattr.<name>` =
 * base64 value (GNU's SCHILY.xattr is raw bytes, which tar-stream's string
 * records can't hold).
 */

const XATTR_PREFIX = 'TSVZ.xattr.';
/** The ustar uid/gid fields hold 6 octal digits. */
const MAX_HEADER_ID = 0o777777;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** Host-specific labels, set by the receiving host's own policy. */
const SKIPPED_XATTRS = new Set(['security.selinux']);

type Header = Partial<tar.Header> & { name: string; pax?: Record<string, string> };
type Entry = tar.ExtractEvents['entry'][1];

/**
 * A tar stream of `dir` (the root itself is the entry "."). `onClose` (e.g.
 * unmount a snapshot) runs as soon as nothing more is read from `dir`: when the
 * last file is packed (before the reader has all of it), or at once when the
 * reader destroys the stream or packing fails. A reader that goes away has
 * `dir` released before destroy() returns, unless a file under it is still
 * open: then onClose fails and is run again once the packer has let go. So
 * onClose must be idempotent.
 */
export function packTree(dir: string, opts: { onClose?: () => void | Promise<void> } = {}): Readable {
  const pack = tar.pack();
  let running: Promise<void> = Promise.resolve();
  let cleanup: Promise<void> | undefined;
  const finish = (err?: Error): Promise<void> => {
    if (err) pack.destroy(err);
    return (cleanup ??= (async () => {
      try {
        await opts.onClose?.(); // a synchronous onClose has run when this returns
      } catch {
        await running.catch(() => undefined); // the packer may still hold a file under dir
        await opts.onClose?.();
      }
    })().catch((cleanupErr: Error) => void out.destroy(err ?? cleanupErr)));
  };
  const out = new PassThrough({
    destroy(err, cb) {
      void finish(err ?? new Error('tar stream closed by its reader'));
      cb(err);
    },
  });
  pack.pipe(out as unknown as NodeJS.WritableStream);
  pack.on('error', (err: Error) => {
    void finish(err);
    out.destroy(err);
  });
  running = new Packer(dir, pack).run();
  running.then(
    () => {
      pack.finalize();
      void finish();
    },
    (err) => {
      const e = err instanceof Error ? err : new Error(String(err));
      void finish(e);
      out.destroy(e);
    },
  );
  return out;
}

class Packer {
  /** "dev:ino" of files with several links -> the name they were first sent under. */
  private readonly linked = new Map<string, string>();

  constructor(private readonly root: string, private readonly pack: tar.Pack) {}

  async run(): Promise<void> {
    await this.add('.');
  }

  private async add(rel: string): Promise<void> {
    const abs = path.join(this.root, rel);
    const st = await fs.promises.lstat(abs, { bigint: true });
    const header: Header = { name: rel, mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), mtime: new Date(Number(st.mtimeMs)) };
    const pax: Record<string, string> = {};
    if (st.mtimeNs % 1_000_000_000n !== 0n) pax.mtime = formatNs(st.mtimeNs);
    if (st.uid > MAX_HEADER_ID) pax.uid = String(st.uid);
    if (st.gid > MAX_HEADER_ID) pax.gid = String(st.gid);
    for (const [name, value] of readXattrs(abs) ?? []) pax[XATTR_PREFIX + name] = value.toString('base64');
    if (Object.keys(pax).length > 0) header.pax = pax;

    if (st.isDirectory()) {
      await this.entry({ ...header, type: 'directory' });
      for (const child of await this.children(abs, rel)) await this.add(rel === '.' ? child : `${rel}/${child}`);
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? this.linked.get(key) : undefined;
      if (first !== undefined) return this.entry({ ...header, type: 'link', linkname: first, size: 0 });
      if (st.nlink > 1n) this.linked.set(key, rel);
      await this.entry({ ...header, type: 'file', size: Number(st.size) }, fs.createReadStream(abs));
    } else if (st.isSymbolicLink()) {
      await this.entry({ ...header, type: 'symlink', linkname: await fs.promises.readlink(abs) });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const [devmajor, devminor] = splitDev(st.rdev);
      await this.entry({ ...header, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor, devminor });
    } else if (st.isFIFO()) {
      await this.entry({ ...header, type: 'fifo' });
    }
    // sockets: skipped (see above)
  }

  /** Child names in a stable order; a name that is not UTF-8 can't be carried faithfully. */
  private async children(abs: string, rel: string): Promise<string[]> {
    const raw = await fs.promises.readdir(abs, { encoding: 'buffer' });
    return raw
      .map((name) => {
        const text = name.toString('utf8');
        if (!Buffer.from(text, 'utf8').equals(name)) {
          throw new StorageError(`cannot send ${path.join(rel, text)}: file name is not valid UTF-8`, { hint: 'rename it, or use a native send format' });
        }
        return text;
      })
      .sort();
  }

  private async entry(header: Header, body?: Readable): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      const sink = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
      sink.on('error', reject); // e.g. the reader went away mid-file
      if (!body) return;
      void (async () => {
        try {
          for await (const chunk of body) {
            if (!sink.write(chunk)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
          }
          (sink as unknown as { end(): void }).end();
        } catch (err) {
          sink.destroy(err as Error);
          reject(err);
        }
      })();
    });
    try {
      await done;
    } finally {
      // Done with the file only once it is closed (packTree's onClose may unmount dir next).
      if (body) {
        body.destroy();
        await finished(body).catch(() => undefined);
      }
    }
  }
}

/** A pax time ("1700000000.123456789", fewer digits, or none) as nanoseconds. */
function parseNs(text: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,9})\d*)?$/.exec(text);
  if (!m) throw new StorageError(`bad pax time ${JSON.stringify(text)}`);
  const ns = BigInt(m[2]) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -ns : ns;
}

function formatNs(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  return `${s}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

/** Linux's encoding of dev_t (see <sys/sysmacros.h>). */
function splitDev(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}

export interface UnpackReport {
  entries: number;
  /** File bytes received (holes included). */
  bytes: number;
}

interface Attributes {
  abs: string;
  mode: number;
  uid: number;
  gid: number;
  /** Nanoseconds since the epoch. */
  mtime: bigint;
  xattrs: [string, Buffer][];
}

/**
 * Unpack a stream from packTree into `dir`, an existing empty directory (the
 * stream's "." entry sets the directory's own attributes). On failure the
 * caller removes what was written (the drivers delete the new volume).
 */
export async function unpackTree(input: Readable, dir: string): Promise<UnpackReport> {
  const root = fs.realpathSync(dir);
  if (fs.readdirSync(root).length > 0) throw new StorageError(`cannot receive into ${dir}: it is not empty`);
  const extract = tar.extract();
  let parseError: unknown;
  extract.on('error', (err: unknown) => (parseError ??= err));
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  const unpacker = new Unpacker(root);
  try {
    for await (const entry of extract) {
      await unpacker.add(entry);
    }
  } catch (err) {
    input.unpipe();
    input.destroy();
    throw parseError && !(err instanceof StorageError) ? parseError : err;
  } finally {
    extract.destroy();
  }
  unpacker.finish();
  return unpacker.report;
}

class Unpacker {
  readonly report: UnpackReport = { entries: 0, bytes: 0 };
  /** Directory attributes are applied last, deepest first: adding children changes their mtime. */
  private readonly dirs: Attributes[] = [];

  constructor(private readonly root: string) {}

  async add(entry: Entry): Promise<void> {
    const h = entry.header as Header;
    const rel = safeRelative(h.name);
    const abs = rel === '' ? this.root : path.join(this.root, rel);
    if (rel !== '') this.checkParent(abs, h.name);
    const pax = h.pax ?? {};
    const attrs: Attributes = {
      abs,
      mode: (h.mode ?? 0o644) & 0o7777,
      uid: pax.uid !== undefined ? Number(pax.uid) : h.uid ?? 0,
      gid: pax.gid !== undefined ? Number(pax.gid) : h.gid ?? 0,
      mtime: pax.mtime !== undefined ? parseNs(pax.mtime) : BigInt(h.mtime?.getTime() ?? Date.now()) * 1_000_000n,
      xattrs: Object.entries(pax)
        .filter(([k]) => k.startsWith(XATTR_PREFIX))
        .map(([k, v]) => [k.slice(XATTR_PREFIX.length), Buffer.from(v, 'base64')]),
    };
    this.report.entries++;
    switch (h.type) {
      case 'directory':
        if (rel !== '') fs.mkdirSync(abs, { mode: 0o700 });
        this.dirs.push(attrs);
        return drain(entry);
      case 'file':
      case 'contiguous-file':
        this.report.bytes += await writeSparse(entry as AsyncIterable<Buffer>, abs, h.size ?? 0);
        return this.apply(attrs, false);
      case 'link': {
        const target = path.join(this.root, safeRelative(h.linkname ?? ''));
        if (!fs.lstatSync(target).isFile()) throw new StorageError(`tar stream: hardlink ${h.name} points at a non-file`);
        fs.linkSync(target, abs);
        return drain(entry);
      }
      case 'symlink':
        fs.symlinkSync(h.linkname ?? '', abs);
        await drain(entry);
        return this.apply(attrs, true);
      case 'character-device':
      case 'block-device':
      case 'fifo':
        mknod(abs, h.type, h.devmajor ?? 0, h.devminor ?? 0);
        await drain(entry);
        return this.apply(attrs, false);
      default:
        throw new StorageError(`tar stream: unsupported entry type ${h.type} for ${h.name}`);
    }
  }

  /** Every parent must be a directory this stream created, so nothing is written through a symlink. */
  private checkParent(abs: string, name: string): void {
    const parent = fs.lstatSync(path.dirname(abs), { throwIfNoEntry: false });
    if (!parent?.isDirectory()) throw new StorageError(`tar stream: the parent of ${name} is not a directory`);
    if (fs.existsSync(abs) || isDanglingLink(abs)) throw new StorageError(`tar stream: ${name} appears twice`);
  }

  /** Owner first (chown clears setuid bits and file capabilities), then mode, xattrs, times. */
  private apply(a: Attributes, symlink: boolean): void {
    fs.lchownSync(a.abs, a.uid, a.gid);
    if (!symlink) fs.chmodSync(a.abs, a.mode);
    for (const [name, value] of a.xattrs) {
      if (SKIPPED_XATTRS.has(name)) continue;
      try {
        setXattr(a.abs, name, value);
      } catch (err) {
        if ((err as SystemError).errno === ERRNO_ENOTSUP) {
          throw new StorageError(`cannot receive ${path.relative(this.root, a.abs) || '.'}: the target filesystem does not support extended attribute ${name}`, {
            hint: 'receive into a pool whose filesystem supports xattrs',
            cause: err,
          });
        }
        throw err;
      }
    }
    setTimesNs(a.abs, a.mtime);
  }

  finish(): void {
    for (const d of this.dirs.reverse()) this.apply(d, false);
  }
}

/** A stream name as a path inside the root: no absolute paths, no "..". "." is the root itself (""). */
function safeRelative(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (name.startsWith('/') || parts.includes('..')) throw new StorageError(`tar stream: unsafe path ${JSON.stringify(name)}`);
  return parts.join('/');
}

function isDanglingLink(p: string): boolean {
  return fs.lstatSync(p, { throwIfNoEntry: false })?.isSymbolicLink() ?? false;
}

/** Consume an entry with no data (async iteration also copes with one that has already ended). */
async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of entry) { /* no body expected */ }
}

/** Write a file, leaving holes where whole aligned blocks are zero; returns the bytes received. */
async function writeSparse(entry: AsyncIterable<Buffer>, abs: string, size: number): Promise<number> {
  const fh = await fs.promises.open(abs, 'wx', 0o600);
  let pos = 0;
  try {
    for await (const chunk of entry) {
      // Cut the chunk at the file's block boundaries; write runs of non-zero blocks, skip zero ones.
      let runStart = -1;
      let off = 0;
      while (off < chunk.length) {
        const len = Math.min(chunk.length - off, BLOCK - ((pos + off) % BLOCK));
        const zero = len === BLOCK && chunk.subarray(off, off + len).equals(ZERO_BLOCK);
        if (zero && runStart >= 0) {
          await fh.write(chunk, runStart, off - runStart, pos + runStart);
          runStart = -1;
        } else if (!zero && runStart < 0) {
          runStart = off;
        }
        off += len;
      }
      if (runStart >= 0) await fh.write(chunk, runStart, chunk.length - runStart, pos + runStart);
      pos += chunk.length;
    }
    if (pos !== size) throw new StorageError(`tar stream: ${path.basename(abs)} ended after ${pos} of ${size} bytes`);
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return pos;
}

function mknod(abs: string, type: 'character-device' | 'block-device' | 'fifo', major: number, minor: number): void {
  const mknodBin = findCommand('mknod');
  if (!mknodBin) throw new StorageError('cannot create device nodes: mknod not found');
  const args = type === 'fifo' ? [abs, 'p'] : [abs, type === 'character-device' ? 'c' : 'b', String(major), String(minor)];
  const r = spawnSync(mknodBin, ['-m', '0600', '--', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new StorageError(`cannot create ${type} ${abs}: ${(r.stderr || r.error?.message || '').trim()}`);
}
