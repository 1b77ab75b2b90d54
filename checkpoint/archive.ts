import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import { compressionOfName, decompressed, decompressedFile, writeCompressed } from '../archive/compress';
import { hashFile, Sha256, sha256 } from '../archive/digest';
import { extractEntries } from '../archive/extract';
import { ManifestCheck, parseFileList, parseJson, type ManifestFile } from '../archive/manifest';
import { FILES_POLICY } from '../archive/policy';
import { missingText, refusalError, type Refusal, type Voice } from '../archive/refusal';
import { readTar, type TarEntry } from '../archive/tar-reader';
import { TarWriter } from '../archive/tar-writer';
import { requireZstd } from '../archive/zstd';
import type { ContainerConfig } from '../runtime/config';
import { CorruptDataError, InvalidArgumentError, NotFoundError, NotSupportedError, SystemError, TsvzError } from '../lib/errors';
import { validateName } from '../lib/names';
import { CheckpointMeta } from './catalog';
import { DUMP_LOG, RESTORE_STATS } from './criu-logs';
import { parseVersion } from './criu/version';
import { ArchiveSigner, ArchiveTrust, MAX_SIGNATURE_BYTES, SIGNATURE_ENTRY, signatureFor, unsigned, verifySignature } from './archive-signature';

/**
 * A checkpoint as one file: a tar (zstd-compressed when the name ends in
 * .zst) holding manifest.json first, its signature (manifest.sig: the
 * exporting host's, see archive-signature.ts), then config.json and
 * images/<file>. The manifest lists the size and sha256 of every other
 * entry, so an importer checks who signed it, then verifies each file as it
 * streams in, before CRIU reads any of it, and treats the archive as hostile
 * until then.
 *
 * This file is only the checkpoint's format (which files, the manifest's
 * fields, the config check); reading, writing, compression, hashing and the
 * path policy are archive/'s. packCheckpoint and receiveCheckpoint take and
 * give plain streams, so a checkpoint can go to a file or to another host.
 */

export const ARCHIVE_FORMAT = 'tsvz-checkpoint';
export const ARCHIVE_VERSION = 1;
const MANIFEST = 'manifest.json';
const CONFIG = 'config.json';
/** Files of a checkpoint's directory that stay on this host: its record (the manifest carries it), CRIU's dump log and its last restore's statistics. */
const HOST_LOCAL = new Set(['checkpoint.json', DUMP_LOG, RESTORE_STATS]);
/** CRIU's link from an incremental dump's images to its parent's. */
export const PARENT_LINK = 'parent';
/** config.json or images/<one CRIU file name>: nothing else can be listed. */
const FILE_PATTERN = /^(config\.json|images\/[A-Za-z0-9][A-Za-z0-9._-]*)$/;
const MAX_MANIFEST_BYTES = 16 * 1024 ** 2;
/** Images are large: read them in large chunks (per-chunk costs vanish, memory stays bounded). */
const IMAGE_CHUNK = 256 * 1024;
const DEFAULT_MAX_FILES = 100_000;
const DEFAULT_MAX_BYTES = 64 * 1024 ** 3;

export type ArchiveFile = ManifestFile;

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_VERSION;
  /** The container the checkpoint was taken of. */
  container: string;
  exportedAt: string;
  checkpoint: CheckpointMeta;
  config: ContainerConfig;
  files: ArchiveFile[];
  /** A migration's memory, which went beside the archive to the receiver's CRIU page server: that stream's bytes and sha256. */
  pageStream?: PageStreamDigest;
  /** A pre-copy migration's earlier rounds, in order: each stream's bytes and sha256 (pageStream is the last round's). */
  preCopy?: PageStreamDigest[];
}

/** Pre-copy's rounds while the container runs, at most (P.Haul's limit). */
export const MAX_PRE_COPY_ROUNDS = 8;

export interface PageStreamDigest {
  bytes: number;
  sha256: string;
}

export interface ArchiveLimits {
  /** Total bytes the listed files may hold (default 64 GiB). */
  maxBytes?: number;
  /** Number of listed files (default 100,000). */
  maxFiles?: number;
}

// ---------------------------------------------------------------- export

/** Write checkpoint directory `dir` (CRIU's files) with its meta and container config to `file`, atomically, signed by `signer`. */
export async function writeCheckpointArchive(file: string, dir: string, meta: CheckpointMeta, config: ContainerConfig, signer?: ArchiveSigner): Promise<ArchiveManifest> {
  const compression = compressionOfName(file);
  if (compression === 'zstd') requireZstd();
  const manifest = await checkpointManifest(dir, meta, config);
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${process.pid}.tmp`);
  let out: fs.promises.FileHandle;
  try {
    out = await fs.promises.open(tmp, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`directory ${path.dirname(file)} does not exist`);
    throw new SystemError(`cannot write ${file}: ${(err as Error).message}`, err);
  }
  try {
    try {
      await writeCompressed(packCheckpoint(dir, manifest, signer), out, compression);
    } finally {
      await out.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    if (err instanceof TsvzError) throw err;
    throw new SystemError(`cannot write ${file}: ${(err as Error).message}`, err);
  }
  return manifest;
}

/**
 * The manifest of checkpoint directory `dir`: its meta, the config, and
 * every file to send with its size and sha256.
 */
export async function checkpointManifest(dir: string, meta: CheckpointMeta, config: ContainerConfig): Promise<ArchiveManifest> {
  const entries = await fs.promises.readdir(dir, { withFileTypes: true });
  // A pre-copy migration's checkpoint keeps memory in its earlier rounds' images, which an archive does not carry.
  if (entries.some((e) => e.name === PARENT_LINK)) {
    throw new NotSupportedError(`checkpoint ${meta.id} of ${meta.container} keeps part of its memory in the images of earlier rounds (a pre-copy migration's)`, 'take a new checkpoint and export that');
  }
  const names = entries
    .filter((e) => e.isFile() && !HOST_LOCAL.has(e.name) && FILE_PATTERN.test(`images/${e.name}`))
    .map((e) => e.name)
    .sort();
  const configJson = configBytes(config);
  const files: ArchiveFile[] = [{ path: CONFIG, size: configJson.length, sha256: sha256(configJson) }];
  for (const name of names) files.push({ path: `images/${name}`, ...await hashFile(path.join(dir, name)) });
  return { format: ARCHIVE_FORMAT, version: ARCHIVE_VERSION, container: meta.container, exportedAt: new Date().toISOString(), checkpoint: meta, config, files };
}

/**
 * The archive of `manifest` (from checkpointManifest of `dir`) as a tar
 * stream, uncompressed: pipe it into a file, a compressor or a socket.
 * Each image is checked, as it streams, to be still what the manifest says,
 * unless `frozen` (nothing can change them: the tree is frozen at CRIU's
 * post-dump, and the receiver checks every byte anyway).
 */
export function packCheckpoint(dir: string, manifest: ArchiveManifest, signer?: ArchiveSigner, opts: { frozen?: boolean } = {}): Readable {
  const writer = new TarWriter();
  const mtime = new Date();
  void (async () => {
    const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
    await writer.add({ name: MANIFEST, mode: 0o644, mtime }, manifestBytes);
    if (signer) await writer.add({ name: SIGNATURE_ENTRY, mode: 0o644, mtime }, signatureFor(manifestBytes, signer));
    for (const f of manifest.files) {
      if (f.path === CONFIG) {
        await writer.add({ name: CONFIG, mode: 0o644, mtime }, configBytes(manifest.config));
        continue;
      }
      const source = path.join(dir, path.basename(f.path));
      const file = fs.createReadStream(source, { highWaterMark: IMAGE_CHUNK });
      if (opts.frozen) {
        await writer.add({ name: f.path, size: f.size, mode: 0o644, mtime }, file);
        continue;
      }
      const sha = new Sha256();
      await writer.add({ name: f.path, size: f.size, mode: 0o644, mtime }, sha.through(file));
      if (sha.digest() !== f.sha256) throw new SystemError(`${source} changed while it was exported`);
    }
    writer.finish();
  })().catch((err: Error) => writer.destroy(err));
  return writer.readable;
}

function configBytes(config: ContainerConfig): Buffer {
  return Buffer.from(JSON.stringify(config, null, 2) + '\n');
}

// ---------------------------------------------------------------- import

export interface ReceiveOptions extends ArchiveLimits {
  /** Whose signatures are accepted (unset: the signature is not looked at). */
  trust?: ArchiveTrust;
  /** Runs before any file is written (e.g. to refuse a CRIU version). */
  onManifest?: (m: ArchiveManifest) => void | Promise<void>;
}

export interface Received {
  dir: string;
  manifest: ArchiveManifest;
  /** The trusted host that signed it; undefined for an unsigned archive accepted as such. */
  signer?: string;
}

/**
 * Verify and unpack archive `file` into a new directory under `parent`
 * (config.json, images/...). Every entry must be listed in the manifest
 * with its size and checksum; nothing unsafe or unlisted is accepted, no
 * listed file may be missing. `onManifest` runs before any file is written
 * (e.g. to refuse a CRIU version). On failure nothing is left in `parent`.
 */
export async function extractCheckpointArchive(file: string, parent: string, opts: ReceiveOptions = {}): Promise<Received> {
  const voice = archiveVoice(`archive ${file}`, 'user');
  return receiveTar(await openArchive(file), parent, { ...opts, voice });
}

/**
 * extractCheckpointArchive's work on any stream of a checkpoint archive
 * (compressed or not; a peer's, say), worded by `voice` (see archiveVoice).
 * Destroys `input` when done.
 */
export async function receiveCheckpoint(input: Readable, parent: string, opts: ReceiveOptions & { voice: Voice }): Promise<Received> {
  input.pause(); // a flowing stream would lose data to its other listeners while we look at its head
  return receiveTar((await decompressed(input)).stream, parent, opts);
}

/** Unpack the (uncompressed) tar stream of a checkpoint archive into a new scratch directory under `parent`, verifying as it comes. */
async function receiveTar(input: Readable, parent: string, opts: ReceiveOptions & { voice: Voice }): Promise<Received> {
  input.pause(); // a flowing stream would lose data to its other listeners while the scratch dir is made
  const { voice } = opts;
  const limits = { maxFiles: opts.maxFiles ?? DEFAULT_MAX_FILES, maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES };
  let dir: string;
  try {
    dir = await fs.promises.mkdtemp(path.join(parent, '.import-'));
    await fs.promises.mkdir(path.join(dir, 'images'), { mode: 0o700 });
  } catch (err) {
    input.destroy();
    throw new SystemError(`cannot make a scratch directory in ${parent}: ${(err as Error).message}`, err);
  }
  try {
    const entries = readTar(input, {
      voice,
      absoluteNames: 'refuse',
      limits: { maxEntries: limits.maxFiles + 2, maxBytes: limits.maxBytes + MAX_MANIFEST_BYTES + MAX_SIGNATURE_BYTES },
    })[Symbol.asyncIterator]();
    let manifest: ArchiveManifest;
    let signer: string | undefined;
    /** The entry read to look for a signature, when it was not one: the first of the files. */
    let peeked: TarEntry | undefined;
    try {
      const first = await entries.next();
      if (first.done) throw refusalError({ kind: 'empty' }, voice);
      const manifestBytes = await manifestBytesOf(first.value, voice);
      manifest = checkManifest(manifestBytes, voice.subject, limits);
      if (opts.trust) {
        // Who made it, before anything else is read: a stranger's images never reach the disk.
        const next = await entries.next();
        if (!next.done && next.value.name === SIGNATURE_ENTRY) {
          signer = verifySignature(voice.subject, manifestBytes, await next.value.readAll(MAX_SIGNATURE_BYTES, voice), opts.trust);
        } else {
          if (!opts.trust.acceptUnsigned) throw unsigned(voice.subject);
          if (!next.done) peeked = next.value;
        }
      }
      await opts.onManifest?.(manifest);
    } catch (err) {
      await entries.return(undefined);
      throw err;
    }
    const check = new ManifestCheck(manifest.files, voice);
    const rest: AsyncIterator<TarEntry> = {
      next: async () => {
        if (peeked) { const e = peeked; peeked = undefined; return { done: false, value: e }; }
        const n = await entries.next();
        // An unsigned archive accepted as such may still carry a signature entry nobody asked about.
        if (!n.done && n.value.name === SIGNATURE_ENTRY && !opts.trust) { await n.value.readAll(MAX_SIGNATURE_BYTES, voice); return entries.next(); }
        return n;
      },
      return: async () => entries.return?.(undefined) ?? { done: true, value: undefined },
    };
    await extractEntries({ [Symbol.asyncIterator]: () => rest }, dir, { policy: FILES_POLICY, voice, expect: (e) => check.expect(e) });
    check.complete();
    const config = parseJson(await fs.promises.readFile(path.join(dir, CONFIG)), `${voice.subject} has an invalid ${CONFIG}`);
    if (!isDeepStrictEqual(config, manifest.config)) throw new CorruptDataError(`${voice.subject} is tampered: ${CONFIG} differs from the manifest`);
    return { dir, manifest, signer };
  } catch (err) {
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function manifestBytesOf(entry: TarEntry, voice: Voice): Promise<Buffer> {
  if (entry.name !== MANIFEST || entry.type !== 'file') {
    throw new CorruptDataError(`${voice.subject} is not a tsvz checkpoint archive: it does not start with ${MANIFEST}`);
  }
  return entry.readAll(MAX_MANIFEST_BYTES, voice);
}

/**
 * How checkpoint archives are spoken of: `subject` is "archive FILE" for a
 * file; `origin` says whose fault a forbidden entry is (a file the user
 * named: EINVAL; a peer's stream: ECORRUPT).
 */
export function archiveVoice(subject: string, origin: Voice['origin']): Voice {
  const tampered = (why: string) => `${subject} is tampered: ${why}`;
  const say = (r: Refusal): string | undefined => {
    switch (r.kind) {
      case 'unsafe-path':
      case 'nul-in-name':
        return `${subject} has an unsafe entry ${JSON.stringify(r.name).slice(1, -1)}`;
      case 'unsafe-type':
        return `${subject} has an unsafe entry ${JSON.stringify(r.name).slice(1, -1)} (${r.type})`;
      case 'truncated':
        return `${subject} is truncated`;
      case 'corrupt':
        return r.format === 'tar' ? `${subject} is not a tsvz checkpoint archive: ${r.detail}` : `${subject} is not a valid ${r.format} archive: ${r.detail}`;
      case 'empty':
        return `${subject} is empty`;
      case 'entry-too-big':
        return `${subject} has an oversized ${r.name}`;
      case 'unlisted':
        return tampered(`unexpected entry ${r.name}`);
      case 'duplicate':
        return tampered(`${r.name} appears twice`);
      case 'size-mismatch':
        return tampered(`${r.name} size mismatch`);
      case 'checksum-mismatch':
        return tampered(`${r.name} checksum mismatch`);
      case 'missing':
        return `${subject} is truncated: ${missingText(r.names)}`;
      default:
        return undefined;
    }
  };
  return { subject, entries: subject, origin, say };
}

/**
 * Check a manifest's shape: it decides file names and sizes, so nothing in
 * it is trusted unchecked. Malformed is ECORRUPT; over a limit, ELIMIT.
 */
export function parseManifest(data: Buffer, file: string, limits: ArchiveLimits = {}): ArchiveManifest {
  return checkManifest(data, `archive ${file}`, limits);
}

function checkManifest(data: Buffer, subject: string, limits: ArchiveLimits): ArchiveManifest {
  const prefix = `${subject} has an invalid manifest`;
  const invalid = (why: string) => new CorruptDataError(`${prefix}: ${why}`);
  const m = parseJson(data, prefix) as any;
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
  const files = parseFileList(m.files, {
    pattern: FILE_PATTERN,
    maxFiles: limits.maxFiles ?? DEFAULT_MAX_FILES,
    maxBytes: limits.maxBytes ?? DEFAULT_MAX_BYTES,
  }, prefix);
  const paths = new Set(files.map((f) => f.path));
  if (!paths.has(CONFIG)) throw invalid(`${CONFIG} is not listed`);
  if (!paths.has('images/pstree.img')) throw invalid('images/pstree.img is not listed');
  const digest = (d: unknown) => typeof d === 'object' && d !== null && Number.isSafeInteger((d as PageStreamDigest).bytes) && (d as PageStreamDigest).bytes >= 0
    && typeof (d as PageStreamDigest).sha256 === 'string' && /^[0-9a-f]{64}$/.test((d as PageStreamDigest).sha256);
  if (m.pageStream !== undefined && !digest(m.pageStream)) throw invalid('bad pageStream');
  const pre = m.preCopy;
  if (pre !== undefined) {
    if (!Array.isArray(pre) || pre.length === 0 || pre.length > MAX_PRE_COPY_ROUNDS || !pre.every(digest)) throw invalid(`bad preCopy (1 to ${MAX_PRE_COPY_ROUNDS} page streams)`);
    if (m.pageStream === undefined) throw invalid('preCopy without the pageStream of its last round');
  }
  return m as ArchiveManifest;
}

/** The archive file's bytes, decompressed; a name that is not a regular file is refused before anything is read. */
async function openArchive(file: string): Promise<Readable> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`archive ${file} not found`);
    throw new SystemError(`cannot read archive ${file}: ${(err as Error).message}`, err);
  }
  if (!(await fh.stat()).isFile()) {
    await fh.close();
    throw new InvalidArgumentError(`archive ${file} is not a file`);
  }
  return (await decompressedFile(fh)).stream;
}
