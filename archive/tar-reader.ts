import { finished, type Readable } from 'node:stream';
import * as tar from 'tar-stream';
import type { TsvzError } from '../lib/errors';
import { streamFailure } from './fault';
import { entryPath, isRefusal, NO_LIMITS, type ExtractPolicy, type Limits } from './policy';
import { refusalError, type Refusal, type Voice } from './refusal';

/**
 * The one tar reader: entries of a tar stream from any Readable, one at a
 * time, with the archive treated as hostile. Names are checked and made
 * root-relative before a caller sees them, the entry count and declared
 * data are bounded before any data is read, and every failure (cut short,
 * not a tar, a stage before it failing) is a typed error worded by the
 * caller's Voice. Memory stays bounded: the parser waits while an entry's
 * data is being consumed, and the input waits for the parser.
 */

const BLOCK = 512;

export interface ReadOptions {
  voice: Voice;
  limits?: Partial<Limits>;
  absoluteNames: ExtractPolicy['absoluteNames'];
  /** Told of names that were changed (a stripped leading "/"), once per archive. */
  onNote?(note: string): void;
}

export class TarEntry {
  private consumed = false;

  constructor(
    readonly header: tar.Header,
    /** The name relative to the root, normalised ("" is the root itself). */
    readonly path: string,
    private readonly source: AsyncIterable<Uint8Array>,
    private readonly fail: (err: unknown) => TsvzError,
  ) {}

  /** The name as the archive wrote it. */
  get name(): string {
    return this.header.name;
  }

  get type(): tar.Header['type'] {
    return this.header.type;
  }

  /** Declared data size (0 for anything but files). */
  get size(): number {
    return this.header.size ?? 0;
  }

  /** The entry's data; a damaged archive is reported as the caller's refusal. Read once. */
  async *chunks(): AsyncGenerator<Buffer> {
    this.consumed = true;
    try {
      for await (const chunk of this.source) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** The whole data in memory, refused (entry-too-big) beyond `max` bytes: for small entries such as a manifest. */
  async readAll(max: number, voice: Voice): Promise<Buffer> {
    if (this.size > max) throw refusalError({ kind: 'entry-too-big', name: this.name, max }, voice);
    const parts: Buffer[] = [];
    for await (const chunk of this.chunks()) parts.push(chunk);
    return Buffer.concat(parts);
  }

  /** Read and discard what is left: the parser moves on only once an entry's data is consumed. */
  async drain(): Promise<void> {
    if (this.consumed) return;
    for await (const _ of this.chunks()) { /* discarded */ }
  }
}

/**
 * Iterate the entries of the tar stream `input`. Each entry's data must be
 * consumed (or left: the reader drains it) before the next is produced.
 * The reader owns `input`: it is destroyed when iteration ends, however.
 */
export async function* readTar(input: Readable, opts: ReadOptions): AsyncGenerator<TarEntry> {
  const { voice } = opts;
  const limits = { ...NO_LIMITS, ...opts.limits };
  const parser = tar.extract();
  // An entry's stream only says "destroyed"; the parser's own error says why (e.g. "Unexpected end of data").
  let parseError: unknown;
  parser.on('error', (err: unknown) => (parseError ??= err));
  let received = 0;
  input.on('data', (chunk: Buffer) => (received += chunk.length));
  // finished() also reports a stream that failed or was destroyed before we came.
  finished(input, (err) => {
    if (err) parser.destroy(err);
  });
  input.pipe(parser as unknown as NodeJS.WritableStream);
  const fail = (err: unknown) => streamFailure(parseError ?? err, voice);
  const refuse = (r: Refusal) => refusalError(r, voice);

  try {
    const it = parser[Symbol.asyncIterator]();
    let entries = 0;
    let bytes = 0;
    let noted = false;
    /** Where the last entry's data ends: an archive must go on past it (to its end-of-archive blocks). */
    let end = 0;
    for (;;) {
      let next: IteratorResult<tar.ExtractEvents['entry'][1]>;
      try {
        next = await it.next();
      } catch (err) {
        throw fail(err);
      }
      if (next.done) break;
      const source = next.value;
      const h = source.header;
      if (++entries > limits.maxEntries) throw refuse({ kind: 'too-many-entries', max: limits.maxEntries });
      const size = h.type === 'directory' ? 0 : h.size ?? 0;
      bytes += size;
      if (bytes > limits.maxBytes) throw refuse({ kind: 'too-much-data', max: limits.maxBytes });
      end = ((h as tar.Header & { byteOffset?: number }).byteOffset ?? 0) + Math.ceil(size / BLOCK) * BLOCK;
      const named = entryPath(h.name, opts.absoluteNames);
      if (isRefusal(named)) throw refuse(named);
      if (named.stripped && !noted) {
        // Noted once: archives made with `tar -P` have thousands of these.
        noted = true;
        opts.onNote?.(`${h.name}: leading "/" stripped (and from any later absolute names)`);
      }
      const entry = new TarEntry(h, named.path, source as AsyncIterable<Uint8Array>, fail);
      yield entry;
      await entry.drain();
    }
    if (entries === 0) throw refuse({ kind: 'empty' });
    // tar-stream reads on past a missing end: a stream cut between two entries must not pass for whole.
    if (received < end + BLOCK) throw refuse({ kind: 'truncated', detail: 'Unexpected end of data' });
  } finally {
    input.unpipe(parser as unknown as NodeJS.WritableStream);
    parser.destroy();
    input.destroy();
  }
}
