import fs = require('node:fs');
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib = require('node:zlib');
import { zstdCompressor, zstdDecompressor } from './zstd';

/**
 * Compression as stream stages, so a tar stream can be compressed on its
 * way to any Writable (a file, a socket) and decompressed from any Readable
 * without either side knowing: gzip through zlib (async, on libuv's
 * threads), zstd through the zstd tool. Decompression failures are
 * StreamFaults (zlib's errors are recognised as such by streamFailure).
 */

export type Compression = 'none' | 'gzip' | 'zstd';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const SNIFF_BYTES = ZSTD_MAGIC.length;
const ALL: readonly Compression[] = ['none', 'gzip', 'zstd'];
/** Reads of archive files: large enough that per-chunk costs vanish, small enough to stay bounded. */
const FILE_CHUNK = 256 * 1024;

/** The compression a file name asks for: .zst, .gz/.tgz, or none. */
export function compressionOfName(file: string): Compression {
  if (/\.(zst|zstd|tzst)$/.test(file)) return 'zstd';
  if (/\.(gz|tgz)$/.test(file)) return 'gzip';
  return 'none';
}

/** The compression of data starting with `head`, by magic bytes. */
export function detectCompression(head: Buffer): Compression {
  if (head.length >= ZSTD_MAGIC.length && head.subarray(0, ZSTD_MAGIC.length).equals(ZSTD_MAGIC)) return 'zstd';
  if (head.length >= GZIP_MAGIC.length && head.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return 'gzip';
  return 'none';
}

/** A stage that compresses what is written to it. */
export function compressor(c: Exclude<Compression, 'none'>): Duplex {
  return c === 'gzip' ? zlib.createGzip() : zstdCompressor();
}

/** A stage that decompresses what is written to it. */
export function decompressor(c: Exclude<Compression, 'none'>): Duplex {
  return c === 'gzip' ? zlib.createGunzip() : zstdDecompressor();
}

/**
 * The uncompressed bytes of `input`, whichever of `allow` it turns out to
 * be compressed with (by its first bytes, read from the stream itself: a
 * pipe or socket works as well as a file). Data in another format passes
 * through unchanged, for the tar reader to refuse. Destroying the result
 * destroys `input` and any stage between.
 */
export async function decompressed(input: Readable, allow: readonly Compression[] = ALL): Promise<{ stream: Readable; compression: Compression }> {
  const { head, stream } = await sniff(input, SNIFF_BYTES);
  const found = detectCompression(head);
  if (found === 'none' || !allow.includes(found)) return { stream, compression: 'none' };
  let stage: Duplex;
  try {
    stage = decompressor(found);
  } catch (err) {
    stream.destroy(); // e.g. zstd is not installed
    throw err;
  }
  stream.on('error', (err) => stage.destroy(err));
  stage.on('close', () => stream.destroy());
  return { stream: stream.pipe(stage), compression: found };
}

/**
 * decompressed() for an open file. A regular file compressed with zstd is
 * read by the zstd tool itself (its compressed bytes never pass through
 * us); anything else (gzip, none, a pipe) streams as decompressed() does.
 * Takes over `fh`: it is closed when the stream is done with it.
 */
export async function decompressedFile(fh: fs.promises.FileHandle, allow: readonly Compression[] = ALL): Promise<{ stream: Readable; compression: Compression }> {
  const isFile = (await fh.stat()).isFile();
  if (isFile && allow.includes('zstd')) {
    const head = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(head, 0, SNIFF_BYTES, 0);
    if (detectCompression(head.subarray(0, bytesRead)) === 'zstd') {
      const stream = zstdDecompressor({ stdin: fh.fd });
      // Ours is closed once the tool is done: closed as the tool started, its input was now and then cut short ('premature end').
      stream.once('close', () => { void fh.close().catch(() => undefined); });
      return { stream, compression: 'zstd' };
    }
  }
  // A pipe has no positions: read it from where it is.
  return decompressed(fh.createReadStream({ start: isFile ? 0 : undefined, highWaterMark: FILE_CHUNK }), allow);
}

/**
 * Write `source` into the open file `fh`, compressed with `c`; resolves once
 * all of it is written. zstd writes the file itself. `fh` stays open.
 */
export async function writeCompressed(source: Readable, fh: fs.promises.FileHandle, c: Compression): Promise<void> {
  if (c === 'zstd') return pipeline(source, zstdCompressor({ stdout: fh.fd }));
  // By descriptor, not by handle: a handle's stream would hold it open until the stream is destroyed.
  const out = fs.createWriteStream('', { fd: fh.fd, autoClose: false, highWaterMark: FILE_CHUNK });
  if (c === 'gzip') return pipeline(source, zlib.createGzip(), out);
  return pipeline(source, out);
}

/**
 * The first `n` bytes of `input` (fewer if it ends sooner), and the stream
 * to read all of it from, those bytes included: `input` itself, with them
 * put back (unshift), so destroying it still reaches the source at once.
 */
export function sniff(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  return new Promise((resolve) => {
    const seen: Buffer[] = [];
    let length = 0;
    const done = (stream: Readable) => {
      input.off('readable', onReadable);
      input.off('end', onEnd);
      input.off('error', onError);
      resolve({ head: Buffer.concat(seen).subarray(0, n), stream });
    };
    const onReadable = () => {
      let chunk: Buffer | string | null;
      while (length < n && (chunk = input.read() as Buffer | string | null) !== null) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        seen.push(buf);
        length += buf.length;
      }
      if (length < n) return;
      input.unshift(Buffer.concat(seen));
      done(input);
    };
    // Shorter than the magic: all of it is in hand.
    const onEnd = () => done(Readable.from(length > 0 ? [Buffer.concat(seen)] : [], { objectMode: false }));
    // The head's failure (a missing file, a dead peer) is the stream's: hand it on.
    const onError = (err: Error) => done(failed(err));
    input.on('readable', onReadable);
    input.once('end', onEnd);
    input.once('error', onError);
    if (input.destroyed) onError(input.errored ?? new Error('stream destroyed before it was read'));
  });
}

/** A stream that fails with `err` when first read (by then its reader listens for the error). */
function failed(err: unknown): Readable {
  return new Readable({
    read() {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    },
  });
}
