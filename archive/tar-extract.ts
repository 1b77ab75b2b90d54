import fs = require('node:fs');
import path = require('node:path');
import zlib = require('node:zlib');
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { InvalidArgumentError, NotFoundError, SystemError, TsvzError } from '../lib/errors';
import { withUndo } from '../lib/undo';
import { formatBytes } from '../lib/units';

/**
 * The `tar:FILE` rootfs template: unpack a (possibly gzip-compressed) rootfs
 * tarball into an empty directory, treating the archive as hostile. Nothing
 * it contains may write outside the destination, escalate privileges on the
 * host (setuid files, device nodes) or exhaust the disk without bound.
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
const GZIP_MAGIC = [0x1f, 0x8b];
/** Parents we have to create ourselves (the archive has no entry for them). */
const IMPLICIT_DIR_MODE = 0o755;
/** Keep rwx and sticky; drop setuid/setgid so the archive cannot plant privileged binaries. */
const SAFE_MODE_MASK = 0o1777;
const MAX_ID = 2 ** 32 - 2; // (uid_t)-1 means "unchanged" to chown, so it is not a valid owner

type Entry = tar.ExtractEvents['entry'][1];
/** Turns a read/parse failure into "unreadable tarball FILE: reason". */
type Fail = (err: unknown) => InvalidArgumentError;

interface Owner {
  mode: number;
  uid: number;
  gid: number;
  /** undefined when the header's mtime is unusable */
  mtime?: Date;
}

/** Extract a tar (optionally gzip-compressed: detect by magic bytes 1f 8b; zstd/xz not needed) into destDir, which must exist and be empty. */
export async function extractTarball(archive: string, destDir: string, limits: ExtractLimits = {}): Promise<ExtractReport> {
  const max = resolveLimits(limits);
  const root = checkDestDir(destDir);
  const rootBefore = fs.lstatSync(root);
  const input = openArchive(archive);
  const parser = tar.extract();
  // An entry's stream only says "destroyed"; the parser's own error says why (e.g. "Unexpected end of data").
  let parseError: unknown;
  parser.on('error', (err) => (parseError ??= err));
  const fail = (err: unknown) => unreadable(archive, parseError ?? err);
  input.on('error', (err) => parser.destroy(err));
  input.pipe(parser as unknown as NodeJS.WritableStream);

  try {
    return await withUndo(async (undo) => {
      // Unwound in reverse: empty the root first, then restore its own attributes (emptying changes its mtime).
      undo.add(`restore ${root} attributes`, () => restoreAttributes(root, rootBefore));
      undo.add(`empty ${root}`, () => emptyDir(root));
      const extractor = new Extractor(archive, root, max, fail);
      for await (const entry of entriesOf(parser, fail)) await extractor.add(entry);
      extractor.finish();
      return extractor.report;
    });
  } finally {
    parser.destroy();
    input.destroy();
  }
}

function resolveLimits(limits: ExtractLimits): Required<ExtractLimits> {
  const max = { maxBytes: limits.maxBytes ?? DEFAULT_MAX_BYTES, maxEntries: limits.maxEntries ?? DEFAULT_MAX_ENTRIES };
  for (const [key, value] of Object.entries(max)) {
    if (!Number.isFinite(value) || value < 0) throw new InvalidArgumentError(`invalid tarball limit ${key}: ${value}`);
  }
  return max;
}

/** The destination must be an existing, empty directory: our undo empties it again. */
function checkDestDir(destDir: string): string {
  let root: string;
  try {
    root = fs.realpathSync(destDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`rootfs directory ${destDir} does not exist`);
    throw new SystemError(`cannot resolve rootfs directory ${destDir}`, err);
  }
  if (!fs.statSync(root).isDirectory()) throw new InvalidArgumentError(`rootfs directory ${destDir} is not a directory`);
  if (fs.readdirSync(root).length > 0) throw new InvalidArgumentError(`rootfs directory ${destDir} is not empty`);
  return root;
}

/** A stream of the tar bytes, gunzipped when the file starts with the gzip magic. */
function openArchive(archive: string): Readable {
  let fd: number;
  try {
    fd = fs.openSync(archive, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`tarball ${archive} not found`);
    throw unreadable(archive, err);
  }
  const magic = Buffer.alloc(2);
  let got: number;
  try {
    got = fs.readSync(fd, magic, 0, 2, 0);
  } catch (err) {
    fs.closeSync(fd);
    throw unreadable(archive, err); // e.g. EISDIR
  }
  // Reading through the fd we checked, so the file cannot be swapped in between.
  const raw = fs.createReadStream(archive, { fd, start: 0 });
  if (got < 2 || magic[0] !== GZIP_MAGIC[0] || magic[1] !== GZIP_MAGIC[1]) return raw;
  const gunzip = zlib.createGunzip();
  raw.on('error', (err) => gunzip.destroy(err));
  gunzip.on('close', () => raw.destroy());
  return raw.pipe(gunzip);
}

/** Iterate the archive's entries, reporting parse/decompress failures as an unreadable tarball. */
async function* entriesOf(parser: tar.Extract, fail: Fail): AsyncGenerator<Entry> {
  const it = parser[Symbol.asyncIterator]();
  let count = 0;
  for (;;) {
    let next: IteratorResult<Entry>;
    try {
      next = await it.next();
    } catch (err) {
      throw fail(err);
    }
    if (next.done) break;
    count++;
    yield next.value;
  }
  if (count === 0) throw fail(new Error('no entries'));
}

/** The entry's data, with a truncated archive reported as unreadable. */
async function* chunksOf(entry: Entry, fail: Fail): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of entry) yield chunk as Buffer;
  } catch (err) {
    throw fail(err);
  }
}

function unreadable(archive: string, err: unknown): InvalidArgumentError {
  const reason = err instanceof Error ? err.message : String(err);
  return new InvalidArgumentError(`unreadable tarball ${archive}: ${reason}`);
}

/** Extraction state for one archive: what exists in the root and what is still to be applied. */
class Extractor {
  readonly report: ExtractReport = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, skipped: [] };
  private entries = 0;
  private payload = 0;
  private notedAbsolute = false;
  /**
   * Directories already proven real (lstat) or created by us. Sound because we
   * are the only writer of the root and never replace a directory.
   */
  private readonly dirs = new Set<string>(['']);
  /** Regular files we extracted: the only valid hard link targets. */
  private readonly files = new Set<string>();
  /** Directory attributes, applied last so read-only dirs don't block their children. */
  private readonly dirAttrs = new Map<string, Owner>();

  constructor(
    private readonly archive: string,
    private readonly root: string,
    private readonly max: Required<ExtractLimits>,
    private readonly fail: Fail,
  ) {}

  async add(entry: Entry): Promise<void> {
    const h = entry.header;
    this.countEntry(h);
    const rel = this.entryPath(h.name);
    try {
      await this.dispatch(rel, entry);
    } catch (err) {
      if (err instanceof TsvzError) throw err;
      throw new SystemError(`cannot extract tarball entry "${h.name}" into ${this.root}: ${(err as Error).message}`, err);
    }
  }

  private async dispatch(rel: string, entry: Entry): Promise<void> {
    const h = entry.header;
    // tar-stream gives directories no data stream to drain; everything else must be drained.
    switch (h.type) {
      case 'file':
      case 'contiguous-file':
        return this.writeFile(rel, entry);
      case 'directory':
        return this.makeDir(rel, h);
      case 'symlink':
        this.makeSymlink(rel, h);
        break;
      case 'link':
        this.makeHardlink(rel, h);
        break;
      case 'character-device':
      case 'block-device':
        this.skip(rel, 'device node skipped'); // the runtime populates /dev itself
        break;
      case 'fifo':
        this.skip(rel, 'fifo skipped'); // Node cannot mkfifo
        break;
      default:
        this.skip(rel, `unsupported entry type ${(h.type as string | null) ?? 'unknown'} skipped`);
    }
    await drain(entry, this.fail);
  }

  /** Enforce the entry and data limits before touching the disk. */
  private countEntry(h: tar.Header): void {
    if (++this.entries > this.max.maxEntries) {
      throw new InvalidArgumentError(`tarball ${this.archive} has more than ${this.max.maxEntries} entries`, 'raise the entry limit if the archive is trusted');
    }
    if (h.type === 'directory') return;
    this.payload += h.size;
    if (this.payload > this.max.maxBytes) {
      throw new InvalidArgumentError(`tarball ${this.archive} holds more than ${formatBytes(this.max.maxBytes)} of data`, 'raise the size limit if the archive is trusted');
    }
  }

  /** Normalise an entry name to a root-relative path; refuse any ".." outright. */
  private entryPath(name: string): string {
    if (name.includes('\0')) throw new InvalidArgumentError(`tarball entry "${name}" has a NUL byte in its name`);
    const parts = name.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) throw new InvalidArgumentError(`tarball entry "${name}" escapes the root`);
    const rel = parts.join('/');
    if (name.startsWith('/') && !this.notedAbsolute) {
      // Noted once: archives made with `tar -P` have thousands of these.
      this.notedAbsolute = true;
      this.report.skipped.push(`${name}: leading "/" stripped (and from any later absolute names)`);
    }
    return rel;
  }

  private async writeFile(rel: string, entry: Entry): Promise<void> {
    const h = entry.header;
    const attrs = this.attributes(h);
    const file = this.prepareTarget(rel, h.name);
    // O_EXCL + O_NOFOLLOW: never open through a symlink someone left at this path.
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    const fh = await fs.promises.open(file, flags, 0o600);
    try {
      for await (const chunk of chunksOf(entry, this.fail)) {
        await writeAll(fh, chunk);
        this.report.bytes += chunk.length;
      }
      await fh.chown(attrs.uid, attrs.gid);
      await fh.chmod(attrs.mode);
      if (attrs.mtime) await fh.utimes(attrs.mtime, attrs.mtime);
    } finally {
      await fh.close();
    }
    this.files.add(rel);
    this.report.files++;
  }

  private makeDir(rel: string, h: tar.Header): void {
    const attrs = this.attributes(h);
    if (rel !== '') {
      this.checkParents(rel, h.name);
      const full = this.full(rel);
      const st = lstatOrNull(full);
      if (st && !st.isDirectory()) this.remove(rel); // a file or symlink gives way to the directory
      if (!st?.isDirectory()) fs.mkdirSync(full, 0o700);
      this.dirs.add(rel);
    }
    this.dirAttrs.set(rel, attrs); // "./" applies to the root itself, as tar does
    this.report.dirs++;
  }

  /** Symlinks may point anywhere: they are resolved inside the container, never by us. */
  private makeSymlink(rel: string, h: tar.Header): void {
    const target = h.linkname as string | null;
    if (!target || target.includes('\0')) throw new InvalidArgumentError(`tarball symlink "${h.name}" has an invalid target`);
    const attrs = this.attributes(h);
    const link = this.prepareTarget(rel, h.name);
    fs.symlinkSync(target, link);
    fs.lchownSync(link, attrs.uid, attrs.gid);
    if (attrs.mtime) bestEffort(() => fs.lutimesSync(link, attrs.mtime!, attrs.mtime!));
    this.report.symlinks++;
  }

  /** Hard links may only join files this archive already put inside the root. */
  private makeHardlink(rel: string, h: tar.Header): void {
    const linkname = (h.linkname as string | null) ?? '';
    const parts = linkname.split('/').filter((p) => p !== '' && p !== '.');
    if (linkname.startsWith('/') || parts.includes('..') || linkname.includes('\0')) {
      throw new InvalidArgumentError(`tarball hard link "${h.name}" -> "${linkname}" escapes the root`);
    }
    const target = parts.join('/');
    if (!this.files.has(target) || !lstatOrNull(this.full(target))?.isFile()) {
      throw new InvalidArgumentError(`tarball hard link "${h.name}" -> "${linkname}" does not name a file extracted before it`);
    }
    if (target === rel) throw new InvalidArgumentError(`tarball hard link "${h.name}" links to itself`);
    const link = this.prepareTarget(rel, h.name);
    fs.linkSync(this.full(target), link);
    this.files.add(rel);
    this.report.hardlinks++;
  }

  private skip(rel: string, why: string): void {
    this.report.skipped.push(`${rel}: ${why}`);
  }

  /** Apply directory attributes, deepest first, the root last. */
  finish(): void {
    const order = [...this.dirAttrs.keys()].sort((a, b) => depth(b) - depth(a));
    for (const rel of order) {
      const attrs = this.dirAttrs.get(rel)!;
      const full = this.full(rel);
      try {
        fs.lchownSync(full, attrs.uid, attrs.gid);
        fs.chmodSync(full, attrs.mode);
        if (attrs.mtime) fs.utimesSync(full, attrs.mtime, attrs.mtime);
      } catch (err) {
        throw new SystemError(`cannot set attributes of ${full}: ${(err as Error).message}`, err);
      }
    }
  }

  /**
   * Make `rel` ready for a new non-directory: parents checked, any old
   * non-directory removed (so the create cannot follow it), directories kept.
   */
  private prepareTarget(rel: string, name: string): string {
    if (rel === '') throw new InvalidArgumentError(`tarball entry "${name}" would replace the root directory`);
    this.checkParents(rel, name);
    const st = lstatOrNull(this.full(rel));
    if (st?.isDirectory()) throw new InvalidArgumentError(`tarball entry "${name}" would replace directory "${rel}"`);
    if (st) this.remove(rel);
    return this.full(rel);
  }

  /** Every parent of `rel` must be a real directory in the root, never a symlink; missing ones are created. */
  private checkParents(rel: string, name: string): void {
    const parts = rel.split('/');
    let dir = '';
    for (const part of parts.slice(0, -1)) {
      dir = dir ? `${dir}/${part}` : part;
      if (this.dirs.has(dir)) continue;
      const full = this.full(dir);
      const st = lstatOrNull(full);
      if (st?.isSymbolicLink()) throw new InvalidArgumentError(`tarball entry "${name}" would write through symlink "${dir}"`);
      if (st && !st.isDirectory()) throw new InvalidArgumentError(`tarball entry "${name}" has a parent "${dir}" that is not a directory`);
      if (!st) {
        fs.mkdirSync(full);
        fs.chmodSync(full, IMPLICIT_DIR_MODE); // not subject to our umask
      }
      this.dirs.add(dir);
    }
  }

  private remove(rel: string): void {
    fs.unlinkSync(this.full(rel)); // unlink never follows a symlink
    this.files.delete(rel);
  }

  private attributes(h: tar.Header): Owner {
    for (const id of [h.uid, h.gid]) {
      if (!Number.isInteger(id) || id < 0 || id > MAX_ID) throw new InvalidArgumentError(`tarball entry "${h.name}" has an invalid owner ${h.uid}:${h.gid}`);
    }
    const mtime = Number.isFinite(h.mtime?.getTime()) ? h.mtime : undefined;
    return { mode: (h.mode || 0) & SAFE_MODE_MASK, uid: h.uid, gid: h.gid, mtime };
  }

  private full(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }
}

/** Read and discard an entry's data: the parser only moves on once it is consumed. */
async function drain(entry: Entry, fail: Fail): Promise<void> {
  for await (const chunk of chunksOf(entry, fail)) void chunk;
}

async function writeAll(fh: fs.promises.FileHandle, chunk: Buffer): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

function lstatOrNull(file: string): fs.Stats | null {
  try {
    return fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}

/** Timestamps on symlinks are cosmetic; some filesystems refuse them. */
function bestEffort(fn: () => void): void {
  try {
    fn();
  } catch {
    /* ignored */
  }
}

/** Undo: the root was empty when we started, so everything in it is ours. */
function emptyDir(root: string): void {
  for (const name of fs.readdirSync(root)) fs.rmSync(path.join(root, name), { recursive: true, force: true });
}

/** Undo: a "./" entry may have changed the root's own attributes. */
function restoreAttributes(root: string, st: fs.Stats): void {
  fs.chownSync(root, st.uid, st.gid);
  fs.chmodSync(root, st.mode & 0o7777);
  fs.utimesSync(root, st.atime, st.mtime);
}
