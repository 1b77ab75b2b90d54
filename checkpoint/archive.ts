import { spawn, ChildProcess } from 'node:child_process';
import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import type { Readable, Writable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import * as tar from 'tar-stream';
import type { ContainerConfig } from '../runtime/config';
import { InvalidArgumentError, NotFoundError, NotSupportedError, SystemError, TsvzError } from '../lib/errors';
import { validateName } from '../lib/names';
import { CheckpointMeta } from './catalog';
import { DUMP_LOG, RESTORE_STATS } from './criu-logs';
import { parseVersion } from './criu/version';

/**
 * A checkpoint as one file: a tar (zstd-compressed when the name ends in
 * .zst) holding manifest.json first, then config.json and images/<file>.
 * The manifest lists the size and sha256 of every other entry, so an
 * importer verifies each file as it streams in, before CRIU reads any of it,
 * and treats the archive as hostile until then. (The manifest is not signed:
 * this catches corruption and edited images, not a forger who rewrites the
 * manifest too.)
 */

export const ARCHIVE_FORMAT = 'tsvz-checkpoint';
export const ARCHIVE_VERSION = 1;
const MANIFEST = 'manifest.json';
const CONFIG = 'config.json';
/** Files of a checkpoint's directory that stay on this host: its record (the manifest carries it), CRIU's dump log and its last restore's statistics. */
const HOST_LOCAL = new Set(['checkpoint.json', DUMP_LOG, RESTORE_STATS]);
/** config.json or images/<one CRIU file name>: nothing else can be listed. */
const FILE_PATTERN = /^(config\.json|images\/[A-Za-z0-9][A-Za-z0-9._-]*)$/;
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const MAX_MANIFEST_BYTES = 16 * 1024 ** 2;

export interface ArchiveFile {
  path: string;
  size: number;
  sha256: string;
}

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_VERSION;
  /** The container the checkpoint was taken of. */
  container: string;
  exportedAt: string;
  checkpoint: CheckpointMeta;
  config: ContainerConfig;
  files: ArchiveFile[];
}

export interface ArchiveLimits {
  /** Total bytes the listed files may hold (default 64 GiB). */
  maxBytes?: number;
  /** Number of listed files (default 100,000). */
  maxFiles?: number;
}

// ---------------------------------------------------------------- export

/** Write checkpoint directory `dir` (CRIU's files) with its meta and container config to `file`, atomically. */
export async function writeCheckpointArchive(file: string, dir: string, meta: CheckpointMeta, config: ContainerConfig): Promise<ArchiveManifest> {
  const names = fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !HOST_LOCAL.has(e.name) && FILE_PATTERN.test(`images/${e.name}`))
    .map((e) => e.name)
    .sort();
  const configJson = Buffer.from(JSON.stringify(config, null, 2) + '\n');
  const files: ArchiveFile[] = [{ path: CONFIG, size: configJson.length, sha256: sha256(configJson) }];
  for (const name of names) files.push({ path: `images/${name}`, ...(await hashFile(path.join(dir, name))) });
  const manifest: ArchiveManifest = {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_VERSION,
    container: meta.container,
    exportedAt: new Date().toISOString(),
    checkpoint: meta,
    config,
    files,
  };

  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.tmp`);
  let out: fs.WriteStream;
  try {
    out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    await new Promise((res, rej) => out.once('open', res).once('error', rej));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`directory ${path.dirname(file)} does not exist`);
    throw new SystemError(`cannot write ${file}: ${(err as Error).message}`, err);
  }
  const pack = tar.pack();
  const zstd = file.endsWith('.zst') ? startZstd(['-q', '-c', '-T0']) : undefined;
  try {
    const written = Promise.all([
      zstd ? pipeTo(pack, zstd.stdin!) : pipeTo(pack, out),
      zstd ? pipeTo(zstd.stdout!, out) : undefined,
      zstd ? exitOf(zstd, 'zstd') : undefined,
    ]);
    written.catch(() => pack.destroy());
    await addEntry(pack, MANIFEST, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
    await addEntry(pack, CONFIG, configJson);
    for (const f of files.slice(1)) await addFile(pack, f, path.join(dir, path.basename(f.path)));
    pack.finalize();
    await written;
    fs.renameSync(tmp, file);
  } catch (err) {
    pack.destroy();
    out.destroy();
    if (zstd?.exitCode === null) zstd.kill();
    fs.rmSync(tmp, { force: true });
    if (err instanceof TsvzError) throw err;
    throw new SystemError(`cannot write ${file}: ${(err as Error).message}`, err);
  }
  return manifest;
}

/** Pipe and wait until `dst` has flushed (and, for a file, closed). */
function pipeTo(src: Readable | tar.Pack, dst: Writable): Promise<void> {
  return new Promise((res, rej) => {
    src.once('error', rej);
    dst.once('error', rej);
    dst.once(dst instanceof fs.WriteStream ? 'close' : 'finish', () => res());
    (src as Readable).pipe(dst);
  });
}

function addEntry(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((res, rej) => {
    pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date() }, data, (err) => (err ? rej(err) : res())).once('error', rej);
  });
}

/** Stream one image in, checking it is still what the manifest says. */
async function addFile(pack: tar.Pack, f: ArchiveFile, source: string): Promise<void> {
  const hash = crypto.createHash('sha256');
  await new Promise<void>((res, rej) => {
    const entry = pack.entry({ name: f.path, size: f.size, mode: 0o644, mtime: new Date() }, (err) => (err ? rej(err) : res()));
    entry.once('error', rej);
    const src = fs.createReadStream(source);
    src.on('data', (chunk) => hash.update(chunk));
    src.once('error', (err) => { entry.destroy(err); rej(err); });
    src.pipe(entry as unknown as Writable);
  });
  if (hash.digest('hex') !== f.sha256) throw new SystemError(`${source} changed while it was exported`);
}

// ---------------------------------------------------------------- import

/**
 * Verify and unpack archive `file` into a new directory under `parent`
 * (config.json, images/...). Every entry must be listed in the manifest
 * with its size and checksum; nothing unsafe or unlisted is accepted, no
 * listed file may be missing. `onManifest` runs before any file is written
 * (e.g. to refuse a CRIU version). On failure nothing is left in `parent`.
 */
export async function extractCheckpointArchive(
  file: string,
  parent: string,
  opts: ArchiveLimits & { onManifest?: (m: ArchiveManifest) => void | Promise<void> } = {},
): Promise<{ dir: string; manifest: ArchiveManifest }> {
  const input = openArchive(file);
  const dir = fs.mkdtempSync(path.join(parent, '.import-'));
  const parser = tar.extract();
  let parseError: unknown;
  parser.on('error', (err) => (parseError ??= err));
  input.stream.on('error', (err) => parser.destroy(err));
  input.stream.pipe(parser as unknown as NodeJS.WritableStream);
  const bad = (why: string) => new InvalidArgumentError(`archive ${file} ${why}`);
  const readFailure = (err: unknown) => {
    const cause = input.failure() ?? parseError ?? err;
    if (cause instanceof TsvzError) return cause;
    const msg = cause instanceof Error ? cause.message : String(cause);
    if (/unexpected end|premature|truncated|incomplete|aborted|closed/i.test(msg)) return bad('is truncated');
    return bad(`is not a tsvz checkpoint archive: ${msg}`);
  };

  try {
    let manifest: ArchiveManifest | undefined;
    const listed = new Map<string, ArchiveFile>();
    const seen = new Set<string>();
    fs.mkdirSync(path.join(dir, 'images'), { mode: 0o700 });
    for await (const entry of entriesOf(parser, readFailure)) {
      const h = entry.header;
      checkSafe(h, bad);
      if (!manifest) {
        if (h.name !== MANIFEST || h.type !== 'file') throw bad(`is not a tsvz checkpoint archive: it does not start with ${MANIFEST}`);
        if (h.size === undefined || h.size > MAX_MANIFEST_BYTES) throw bad(`has an oversized ${MANIFEST}`);
        manifest = parseManifest(await readAll(entry, readFailure), file, opts);
        for (const f of manifest.files) listed.set(f.path, f);
        await opts.onManifest?.(manifest);
        continue;
      }
      const f = listed.get(h.name);
      if (!f || h.type !== 'file') throw bad(`is tampered: unexpected entry ${h.name}`);
      if (seen.has(h.name)) throw bad(`is tampered: ${h.name} appears twice`);
      if (h.size !== f.size) throw bad(`is tampered: ${h.name} size mismatch`);
      seen.add(h.name);
      const digest = await writeEntry(entry, path.join(dir, h.name), readFailure);
      if (digest !== f.sha256) throw bad(`is tampered: ${h.name} checksum mismatch`);
    }
    await input.done().catch((err) => { throw readFailure(err); });
    if (!manifest) throw bad('is empty');
    const missing = manifest.files.filter((f) => !seen.has(f.path)).map((f) => f.path);
    if (missing.length > 0) throw bad(`is truncated: ${missing[0]}${missing.length > 1 ? ` and ${missing.length - 1} more files are` : ' is'} missing`);
    const config = JSON.parse(fs.readFileSync(path.join(dir, CONFIG), 'utf8')) as unknown;
    if (!isDeepStrictEqual(config, manifest.config)) throw bad(`is tampered: ${CONFIG} differs from the manifest`);
    return { dir, manifest };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    if (err instanceof TsvzError) throw err;
    throw readFailure(err);
  } finally {
    parser.destroy();
    input.close();
  }
}

/** Names and types that could write outside the destination are refused outright. */
function checkSafe(h: tar.Header, bad: (why: string) => Error): void {
  const parts = h.name.split('/');
  if (h.name.includes('\0') || h.name.startsWith('/') || parts.includes('..')) throw bad(`has an unsafe entry ${JSON.stringify(h.name).slice(1, -1)}`);
  if (h.type && !['file', 'contiguous-file', 'directory'].includes(h.type)) throw bad(`has an unsafe entry ${h.name} (${h.type})`);
}

/** Check a manifest's shape: it decides file names and sizes, so nothing in it is trusted unchecked. */
export function parseManifest(data: Buffer, file: string, limits: ArchiveLimits = {}): ArchiveManifest {
  const invalid = (why: string) => new InvalidArgumentError(`archive ${file} has an invalid manifest: ${why}`);
  let m: any;
  try { m = JSON.parse(data.toString('utf8')); } catch { throw invalid('not JSON'); }
  if (typeof m !== 'object' || m === null || m.format !== ARCHIVE_FORMAT) throw invalid(`format is not ${ARCHIVE_FORMAT}`);
  if (m.version !== ARCHIVE_VERSION) throw invalid(`version ${JSON.stringify(m.version)}, this tsvz reads ${ARCHIVE_VERSION}`);
  const named = (v: unknown, what: string) => {
    try { return validateName(v as string, what); } catch (err) { throw invalid((err as Error).message); }
  };
  named(m.container, 'container');
  const cp = m.checkpoint;
  if (typeof cp !== 'object' || cp === null) throw invalid('no checkpoint');
  named(cp.id, 'checkpoint');
  named(cp.container, 'container');
  try { parseVersion(cp.criuVersion); } catch { throw invalid(`bad CRIU version ${JSON.stringify(cp.criuVersion)}`); }
  for (const [key, type] of [['createdAt', 'string'], ['kernel', 'string'], ['leaveRunning', 'boolean'], ['tcpEstablished', 'boolean'], ['dumpMs', 'number']]) {
    if (typeof cp[key] !== type) throw invalid(`checkpoint ${key} is not a ${type}`);
  }
  // The config may become a new container's: its values are checked again by create.
  const cfg = m.config;
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  if (typeof cfg !== 'object' || cfg === null || typeof cfg.template !== 'string' || typeof cfg.hostname !== 'string'
    || !strings(cfg.init) || cfg.init.length === 0 || !strings(cfg.env) || typeof cfg.stopSignal !== 'string'
    || typeof cfg.limits !== 'object' || cfg.limits === null || typeof cfg.net !== 'object' || cfg.net === null) {
    throw invalid('bad container config');
  }
  if (!Array.isArray(m.files)) throw invalid('no file list');
  const maxFiles = limits.maxFiles ?? 100_000;
  const maxBytes = limits.maxBytes ?? 64 * 1024 ** 3;
  if (m.files.length > maxFiles) throw invalid(`more than ${maxFiles} files`);
  const paths = new Set<string>();
  let total = 0;
  for (const f of m.files) {
    if (typeof f !== 'object' || f === null || typeof f.path !== 'string' || !FILE_PATTERN.test(f.path)) {
      throw invalid(`bad file entry ${JSON.stringify(f?.path ?? f)}`);
    }
    if (!Number.isSafeInteger(f.size) || f.size < 0) throw invalid(`bad size for ${f.path}`);
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw invalid(`bad sha256 for ${f.path}`);
    if (paths.has(f.path)) throw invalid(`${f.path} listed twice`);
    paths.add(f.path);
    total += f.size;
  }
  if (total > maxBytes) throw invalid(`its files hold more than ${maxBytes} bytes`);
  if (!paths.has(CONFIG)) throw invalid(`${CONFIG} is not listed`);
  if (!paths.has('images/pstree.img')) throw invalid('images/pstree.img is not listed');
  return m as ArchiveManifest;
}

interface ArchiveInput {
  stream: Readable;
  /** A decompressor's own failure, once known. */
  failure(): Error | undefined;
  /** Resolves when the input (and decompressor) finished cleanly. */
  done(): Promise<void>;
  close(): void;
}

/** The tar bytes of `file`, through `zstd -d` when it starts with zstd's magic. */
function openArchive(file: string): ArchiveInput {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
    if (!fs.fstatSync(fd).isFile()) { fs.closeSync(fd); throw new InvalidArgumentError(`archive ${file} is not a file`); }
  } catch (err) {
    if (err instanceof TsvzError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`archive ${file} not found`);
    throw new SystemError(`cannot read archive ${file}: ${(err as Error).message}`, err);
  }
  const magic = Buffer.alloc(4);
  const got = fs.readSync(fd, magic, 0, 4, 0);
  if (got < 4 || !magic.equals(ZSTD_MAGIC)) {
    const stream = fs.createReadStream(file, { fd, start: 0 });
    const ended = new Promise<void>((res, rej) => stream.once('end', res).once('error', rej));
    ended.catch(() => undefined);
    return { stream, failure: () => undefined, done: () => ended, close: () => stream.destroy() };
  }
  const zstd = startZstd(['-d', '-q', '-c'], fd);
  fs.closeSync(fd);
  let failure: Error | undefined;
  const exited = exitOf(zstd, 'zstd -d').catch((err: Error) => {
    failure = /premature|truncated|incomplete|unexpected end/i.test(err.message) ? new InvalidArgumentError(`archive ${file} is truncated`) : new InvalidArgumentError(`archive ${file} is not a valid zstd archive: ${err.message}`);
    zstd.stdout!.destroy(failure);
    throw failure;
  });
  exited.catch(() => undefined);
  return { stream: zstd.stdout!, failure: () => failure, done: () => exited, close: () => { if (zstd.exitCode === null) zstd.kill(); } };
}

function startZstd(args: string[], stdinFd?: number): ChildProcess {
  const child = spawn('zstd', args, { stdio: [stdinFd ?? 'pipe', 'pipe', 'pipe'] });
  return child;
}

/** Resolves when the child exits 0; rejects with its last stderr line otherwise. */
function exitOf(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (d) => { if (stderr.length < 4096) stderr += d; });
  return new Promise((res, rej) => {
    child.once('error', (err) => {
      rej((err as NodeJS.ErrnoException).code === 'ENOENT' ? new NotSupportedError('zstd is not installed', 'install zstd, or use a plain .tar') : err);
    });
    child.once('close', (code, signal) => {
      if (code === 0) return res();
      const line = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
      rej(new Error(`${what} failed (${signal ?? `exit ${code}`})${line ? `: ${line}` : ''}`));
    });
  });
}

type Entry = tar.ExtractEvents['entry'][1];
type Fail = (err: unknown) => Error;

async function* entriesOf(parser: tar.Extract, fail: Fail): AsyncGenerator<Entry> {
  const it = parser[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Entry>;
    try { next = await it.next(); } catch (err) { throw fail(err); }
    if (next.done) return;
    yield next.value;
  }
}

async function* chunksOf(entry: Entry, fail: Fail): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of entry) yield chunk as Buffer;
  } catch (err) {
    throw fail(err);
  }
}

async function readAll(entry: Entry, fail: Fail): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of chunksOf(entry, fail)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Write an entry to a new file (never through an existing path) and return its sha256. */
async function writeEntry(entry: Entry, dest: string, fail: Fail): Promise<string> {
  const hash = crypto.createHash('sha256');
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  const fh = await fs.promises.open(dest, flags, 0o600);
  try {
    for await (const chunk of chunksOf(entry, fail)) {
      hash.update(chunk);
      let off = 0;
      while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const hash = crypto.createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}
