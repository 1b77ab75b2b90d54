import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { InvalidArgumentError, NotFoundError, NotSupportedError, SystemError, TsvzError } from '../lib/errors';
import { ERRNO_ENOTSUP, setTimesNs, setXattr } from '../lib/libc-fs';
import { Sha256 } from './digest';
import { makeNode, type NodeType } from './nodes';
import { mtimeNsOf, ownerOf, xattrsOf } from './pax';
import { actionFor, isRefusal, linkTarget, type ExtractPolicy, type Limits } from './policy';
import { refusalError, type Refusal, type Voice } from './refusal';
import { readTar, type TarEntry } from './tar-reader';

/**
 * The one extractor: tar entries into an existing, empty directory, under
 * an ExtractPolicy. Whatever the policy, nothing is written outside the
 * root: names were made root-relative by the reader, no parent may be a
 * symlink, a new file never opens an existing path (O_EXCL|O_NOFOLLOW),
 * and hard links join only regular files already inside the root.
 * Directory attributes are applied last, deepest first, so a read-only
 * directory does not block its children and adding them does not change
 * its mtime. On failure the caller removes what was written (it knows
 * whether that means emptying the root or deleting a volume).
 */

export interface ExtractOptions {
  policy: Readonly<ExtractPolicy>;
  voice: Voice;
  limits?: Partial<Limits>;
  /**
   * Runs for each entry the policy lets through, before anything of it is
   * written; may refuse it by throwing. A returned sha256 is checked
   * against the entry's data as it streams in.
   */
  expect?(entry: TarEntry): { sha256: string } | void | Promise<{ sha256: string } | void>;
}

export interface ExtractReport {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Devices and fifos made. */
  nodes: number;
  /** Bytes of file data received (holes included). */
  bytes: number;
  /** Entries left out, and names changed, e.g. "dev/sda: device node skipped". */
  skipped: string[];
}

/** Extract the tar stream `input` into `root` (see extractEntries). Destroys `input` when done. */
export async function extractTar(input: Readable, root: string, opts: ExtractOptions): Promise<ExtractReport> {
  const report = emptyReport();
  const entries = readTar(input, {
    voice: opts.voice,
    limits: opts.limits,
    absoluteNames: opts.policy.absoluteNames,
    onNote: (note) => report.skipped.push(note),
  });
  return extractEntries(entries, root, opts, report);
}

/** Extract entries from readTar (perhaps after the caller took some itself) into `root`, an empty directory's real path. */
export async function extractEntries(entries: AsyncIterable<TarEntry>, root: string, opts: ExtractOptions, report = emptyReport()): Promise<ExtractReport> {
  const extractor = new Extractor(root, opts, report);
  for await (const entry of entries) await extractor.add(entry);
  await extractor.finish();
  return report;
}

/**
 * The real path of `dir`, which must be an existing, empty directory (the
 * extractor writes only where it made everything itself). `what` names it
 * in errors: "rootfs directory".
 */
export async function emptyDestination(dir: string, what: string): Promise<string> {
  let root: string;
  try {
    root = await fs.promises.realpath(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${what} ${dir} does not exist`);
    throw new SystemError(`cannot resolve ${what} ${dir}`, err);
  }
  if (!(await fs.promises.stat(root)).isDirectory()) throw new InvalidArgumentError(`${what} ${dir} is not a directory`);
  if ((await fs.promises.readdir(root)).length > 0) throw new InvalidArgumentError(`${what} ${dir} is not empty`);
  return root;
}

function emptyReport(): ExtractReport {
  return { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, nodes: 0, bytes: 0, skipped: [] };
}

/** Parents we have to create ourselves (the archive has no entry for them). */
const IMPLICIT_DIR_MODE = 0o755;
const NEW_FILE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** Host-specific labels, set by the receiving host's own policy. */
const SKIPPED_XATTRS = new Set(['security.selinux']);
/** Directories proven real are remembered up to this many (then re-proven by lstat): memory stays bounded. */
const MAX_PROVEN_DIRS = 4096;

interface Attributes {
  mode: number;
  uid?: number;
  gid?: number;
  /** Nanoseconds since the epoch; undefined leaves the time alone. */
  mtimeNs?: bigint;
  xattrs: [string, Buffer][];
}

class Extractor {
  private readonly policy: Readonly<ExtractPolicy>;
  /**
   * Directories proven real (lstat) or made by us. Sound because we are the
   * only writer of the root and never replace a directory.
   */
  private readonly proven = new Set<string>(['']);
  /** Directory attributes, applied last. */
  private readonly dirAttrs: { rel: string; name: string; attrs: Attributes }[] = [];

  constructor(private readonly root: string, private readonly opts: ExtractOptions, readonly report: ExtractReport) {
    this.policy = opts.policy;
  }

  async add(entry: TarEntry): Promise<void> {
    this.report.entries++;
    const action = actionFor(this.policy, entry.type);
    if (action === 'refuse') throw this.refuse({ kind: 'unsafe-type', name: entry.name, type: String(entry.type ?? 'unknown') });
    if (action === 'skip') {
      this.report.skipped.push(`${entry.path}: ${skipNote(entry.type)}`);
      return entry.drain();
    }
    const expected = (await this.opts.expect?.(entry)) ?? undefined;
    try {
      await this.dispatch(entry, expected?.sha256);
    } catch (err) {
      throw this.failure(err, entry);
    }
  }

  private async dispatch(entry: TarEntry, sha256: string | undefined): Promise<void> {
    switch (entry.type) {
      case 'file':
      case 'contiguous-file':
        return this.writeFile(entry, sha256);
      case 'directory':
        await this.makeDir(entry);
        return entry.drain();
      case 'symlink':
        await this.makeSymlink(entry);
        return entry.drain();
      case 'link':
        await this.makeHardlink(entry);
        return entry.drain();
      default:
        await this.makeNode(entry, entry.type as NodeType);
        return entry.drain();
    }
  }

  private async writeFile(entry: TarEntry, sha256: string | undefined): Promise<void> {
    const attrs = this.attributes(entry);
    const { made: fh, full } = await this.create(entry, (file) => fs.promises.open(file, NEW_FILE, 0o600));
    const sha = sha256 === undefined ? undefined : new Sha256();
    try {
      let pos = 0;
      let dataEnd = 0;
      // Pieces as small as a TLS record are gathered first: one write per piece would wait on the thread pool each time.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const flush = async () => {
        if (batchBytes === 0) return;
        const at = pos - batchBytes;
        if (this.policy.sparse) dataEnd = (await writeSparse(fh, batch.length === 1 ? batch[0] : Buffer.concat(batch), at)) ?? dataEnd;
        else await writeAllv(fh, batch, at);
        batch = [];
        batchBytes = 0;
      };
      for await (const chunk of entry.chunks()) {
        sha?.update(chunk);
        batch.push(chunk);
        batchBytes += chunk.length;
        pos += chunk.length;
        this.report.bytes += chunk.length;
        if (batchBytes >= WRITE_BATCH) await flush();
      }
      await flush();
      if (pos !== entry.size) throw this.refuse({ kind: 'truncated', detail: `${entry.name} ended after ${pos} of ${entry.size} bytes` });
      if (sha && sha.digest() !== sha256) throw this.refuse({ kind: 'checksum-mismatch', name: entry.name });
      // Single calls on our own descriptor: microseconds, not worth a trip through the thread pool per file.
      if (this.policy.sparse && dataEnd < pos) fs.ftruncateSync(fh.fd, pos); // a trailing hole
      if (this.policy.owners) fs.fchownSync(fh.fd, attrs.uid!, attrs.gid!);
      fs.fchmodSync(fh.fd, attrs.mode);
    } finally {
      await fh.close();
    }
    this.applyLate(full, entry, attrs, false);
    this.report.files++;
  }

  private async makeDir(entry: TarEntry): Promise<void> {
    const attrs = this.attributes(entry);
    const rel = entry.path;
    if (rel !== '') {
      await this.checkParents(entry);
      const full = this.full(rel);
      try {
        await fs.promises.mkdir(full, 0o700);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (this.policy.existing === 'refuse') throw this.refuse({ kind: 'duplicate', name: entry.name });
        const st = await fs.promises.lstat(full);
        if (!st.isDirectory()) {
          await fs.promises.unlink(full); // a file or symlink gives way to the directory
          await fs.promises.mkdir(full, 0o700);
        }
      }
      this.prove(rel);
    }
    this.dirAttrs.push({ rel, name: entry.name, attrs }); // "./" applies to the root itself, as tar does
    this.report.dirs++;
  }

  /** Symlinks may point anywhere: they are resolved inside the container, never by us. */
  private async makeSymlink(entry: TarEntry): Promise<void> {
    const target = entry.header.linkname as string | null | undefined;
    if (!target || target.includes('\0')) throw this.refuse({ kind: 'bad-symlink', name: entry.name });
    const attrs = this.attributes(entry);
    const { full } = await this.create(entry, (link) => fs.promises.symlink(target, link));
    if (this.policy.owners) fs.lchownSync(full, attrs.uid!, attrs.gid!);
    this.applyLate(full, entry, attrs, true);
    this.report.symlinks++;
  }

  /** Hard links may only join regular files inside the root, reached through real directories. */
  private async makeHardlink(entry: TarEntry): Promise<void> {
    const linkname = (entry.header.linkname as string | null | undefined) ?? '';
    const target = linkTarget(entry.name, linkname);
    if (isRefusal(target)) throw this.refuse(target);
    if (target.path === entry.path) throw this.refuse({ kind: 'link-self', name: entry.name });
    const notAFile: Refusal = { kind: 'link-target', name: entry.name, target: linkname };
    if (!(await this.isRealDirPath(path.posix.dirname(target.path)))) throw this.refuse(notAFile);
    // Everything in the root was made by this archive, so a regular file here is one extracted before.
    if (!(await lstatOrNull(this.full(target.path)))?.isFile()) throw this.refuse(notAFile);
    await this.create(entry, (link) => fs.promises.link(this.full(target.path), link));
    this.report.hardlinks++;
  }

  private async makeNode(entry: TarEntry, type: NodeType): Promise<void> {
    const attrs = this.attributes(entry);
    const { full } = await this.create(entry, (node) => Promise.resolve(makeNode(node, type, entry.header.devmajor ?? 0, entry.header.devminor ?? 0)));
    if (this.policy.owners) fs.lchownSync(full, attrs.uid!, attrs.gid!);
    fs.chmodSync(full, attrs.mode);
    this.applyLate(full, entry, attrs, false);
    this.report.nodes++;
  }

  /** Apply directory attributes, deepest first, the root last. */
  async finish(): Promise<void> {
    const order = this.dirAttrs.map((d, i) => ({ ...d, i })).sort((a, b) => depth(b.rel) - depth(a.rel) || b.i - a.i);
    for (const { rel, name, attrs } of order) {
      const full = this.full(rel);
      try {
        if (this.policy.owners) await fs.promises.lchown(full, attrs.uid!, attrs.gid!);
        await fs.promises.chmod(full, attrs.mode);
        this.applyLate(full, { name, path: rel }, attrs, false);
      } catch (err) {
        if (err instanceof TsvzError) throw err;
        throw new SystemError(`cannot set attributes of ${full}: ${(err as Error).message}`, err);
      }
    }
  }

  /** After owner and mode (chown clears setuid bits and file capabilities): xattrs, then times. */
  private applyLate(file: string, entry: { name: string; path: string }, attrs: Attributes, symlink: boolean): void {
    for (const [name, value] of attrs.xattrs) {
      if (SKIPPED_XATTRS.has(name)) continue;
      try {
        setXattr(file, name, value);
      } catch (err) {
        if ((err as SystemError).errno === ERRNO_ENOTSUP) {
          throw new NotSupportedError(
            `cannot extract ${entry.path || '.'} from ${this.opts.voice.subject}: the target filesystem does not support extended attribute ${name}`,
            'extract onto a filesystem (a pool) that supports extended attributes',
          );
        }
        throw err;
      }
    }
    if (attrs.mtimeNs === undefined) return;
    try {
      setTimesNs(file, attrs.mtimeNs);
    } catch (err) {
      if (!symlink) throw err; // times on symlinks are cosmetic; some filesystems refuse them
    }
  }

  /**
   * Make a new non-directory at the entry's path with `make` (which must
   * fail with EEXIST rather than follow or reuse anything there). Parents
   * are checked first; something already there is refused, or, when the
   * policy replaces, removed (a directory never is) and `make` tried again.
   */
  private async create<T>(entry: TarEntry, make: (full: string) => Promise<T>): Promise<{ made: T; full: string }> {
    const rel = entry.path;
    if (rel === '') throw this.refuse({ kind: 'replaces-root', name: entry.name });
    await this.checkParents(entry);
    const full = this.full(rel);
    try {
      return { made: await make(full), full };
    } catch (err) {
      if (!isEexist(err)) throw err;
    }
    if (this.policy.existing === 'refuse') throw this.refuse({ kind: 'duplicate', name: entry.name });
    if ((await fs.promises.lstat(full)).isDirectory()) throw this.refuse({ kind: 'replaces-dir', name: entry.name, path: rel });
    await fs.promises.unlink(full); // unlink never follows a symlink
    return { made: await make(full), full };
  }

  /** Every parent of the entry must be a real directory in the root, never a symlink; missing ones are made if the policy allows. */
  private async checkParents(entry: TarEntry): Promise<void> {
    const parts = entry.path.split('/');
    let dir = '';
    for (const part of parts.slice(0, -1)) {
      dir = dir ? `${dir}/${part}` : part;
      if (this.proven.has(dir)) continue;
      const full = this.full(dir);
      const st = await lstatOrNull(full);
      if (st?.isSymbolicLink()) throw this.refuse({ kind: 'through-symlink', name: entry.name, dir });
      if (st && !st.isDirectory()) throw this.refuse({ kind: 'parent-not-dir', name: entry.name, dir });
      if (!st) {
        if (!this.policy.implicitParents) throw this.refuse({ kind: 'parent-missing', name: entry.name, dir });
        await fs.promises.mkdir(full);
        await fs.promises.chmod(full, IMPLICIT_DIR_MODE); // not subject to our umask
      }
      this.prove(dir);
    }
  }

  /** Is `rel` ("." for the root) a real directory reached through real directories only? Makes nothing. */
  private async isRealDirPath(rel: string): Promise<boolean> {
    if (rel === '.' || rel === '') return true;
    let dir = '';
    for (const part of rel.split('/')) {
      dir = dir ? `${dir}/${part}` : part;
      if (this.proven.has(dir)) continue;
      if (!(await lstatOrNull(this.full(dir)))?.isDirectory()) return false;
      this.prove(dir);
    }
    return true;
  }

  private prove(rel: string): void {
    if (this.proven.size >= MAX_PROVEN_DIRS) {
      this.proven.clear();
      this.proven.add('');
    }
    this.proven.add(rel);
  }

  private attributes(entry: TarEntry): Attributes {
    const h = entry.header;
    const { uid, gid } = ownerOf(h);
    if (this.policy.owners && (uid === undefined || gid === undefined)) {
      throw this.refuse({ kind: 'bad-owner', name: entry.name, uid: paxOr(h, 'uid', h.uid), gid: paxOr(h, 'gid', h.gid) });
    }
    let mtimeNs: bigint | undefined;
    if (this.policy.times) {
      try {
        mtimeNs = mtimeNsOf(h);
      } catch (err) {
        throw this.refuse({ kind: 'bad-header', name: entry.name, detail: (err as Error).message });
      }
    }
    return { mode: this.mode(entry), uid, gid, mtimeNs, xattrs: this.policy.xattrs ? xattrsOf(h) : [] };
  }

  private mode(entry: TarEntry): number {
    const mode = entry.header.mode ?? 0;
    switch (this.policy.modes) {
      case 'all': return mode & 0o7777;
      case 'no-setuid': return mode & 0o1777; // keep rwx and sticky
      case 'private': return entry.type === 'directory' ? 0o700 : 0o600;
    }
  }

  private refuse(r: Refusal): TsvzError {
    return refusalError(r, this.opts.voice);
  }

  /** A failed step as a typed error: ours pass through, a full filesystem is ENOSPC, the rest a SystemError. */
  private failure(err: unknown, entry: TarEntry): TsvzError {
    if (err instanceof TsvzError) return err;
    const e = err as NodeJS.ErrnoException;
    const what = `cannot extract ${this.opts.voice.entries} entry "${entry.name}" into ${this.root}`;
    if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
      return new TsvzError('ENOSPC', `${what}: the filesystem is full`, { cause: err, hint: 'free space (or grow the pool) and try again' });
    }
    return new SystemError(`${what}: ${e?.message ?? String(err)}`, err);
  }

  private full(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }
}

function skipNote(type: string | null | undefined): string {
  if (type === 'character-device' || type === 'block-device') return 'device node skipped';
  if (type === 'fifo') return 'fifo skipped';
  return `unsupported entry type ${type ?? 'unknown'} skipped`;
}

function paxOr(h: TarEntry['header'], key: string, fallback: unknown): unknown {
  const pax = h.pax as Record<string, string> | null | undefined;
  return pax?.[key] ?? fallback;
}

/** What a file's data is gathered to before it is written. */
const WRITE_BATCH = 1024 * 1024;

/** `chunks` written at `pos` in one call where the kernel takes them all. */
async function writeAllv(fh: fs.promises.FileHandle, chunks: Buffer[], pos: number): Promise<void> {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const { bytesWritten } = await fh.writev(chunks, pos);
  if (bytesWritten === total) return;
  // A short write: the rest, piece by piece.
  let skip = bytesWritten;
  let at = pos;
  for (const c of chunks) {
    if (skip >= c.length) { skip -= c.length; at += c.length; continue; }
    await writeAll(fh, c.subarray(skip), at + skip);
    at += c.length;
    skip = 0;
  }
}

async function writeAll(fh: fs.promises.FileHandle, chunk: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, pos + off);
    off += bytesWritten;
  }
}

/** Write a chunk at `pos`, leaving holes where whole aligned blocks are zero; returns where the last data written ends (undefined: all holes). */
async function writeSparse(fh: fs.promises.FileHandle, chunk: Buffer, pos: number): Promise<number | undefined> {
  let end: number | undefined;
  let runStart = -1;
  let off = 0;
  while (off < chunk.length) {
    const len = Math.min(chunk.length - off, BLOCK - ((pos + off) % BLOCK));
    const zero = len === BLOCK && chunk.subarray(off, off + len).equals(ZERO_BLOCK);
    if (zero && runStart >= 0) {
      await writeAll(fh, chunk.subarray(runStart, off), pos + runStart);
      end = pos + off;
      runStart = -1;
    } else if (!zero && runStart < 0) {
      runStart = off;
    }
    off += len;
  }
  if (runStart >= 0) {
    await writeAll(fh, chunk.subarray(runStart), pos + runStart);
    end = pos + chunk.length;
  }
  return end;
}

/** EEXIST from node:fs, or from our libc calls (errno 17). */
function isEexist(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'EEXIST' || (err instanceof SystemError && err.errno === 17);
}

async function lstatOrNull(file: string): Promise<fs.Stats | null> {
  try {
    return await fs.promises.lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}
