import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { SystemError } from '../lib/errors';

/**
 * The one tar writer: entries added one at a time, the archive's bytes a
 * Node Readable (`writer.readable`) to pipe into any Writable — a file, a
 * compression stage, a socket. A body is streamed with backpressure: add()
 * resolves once the entry is handed on, and writes only as fast as the
 * reader reads, so memory stays bounded whatever the sizes. A body of
 * another length than its header declares fails the archive rather than
 * corrupting it.
 */

export type TarHeader = Partial<tar.Header> & { name: string; pax?: Record<string, string> };

export interface TarWriterOptions {
  /** Runs when the reader destroys `readable` (went away, or failed), with why. */
  onReaderGone?(err: Error): void;
}

export class TarWriter {
  private readonly pack = tar.pack();
  readonly readable: Readable;

  constructor(opts: TarWriterOptions = {}) {
    this.readable = new PassThrough({
      destroy: (err, cb) => {
        // A stream read to its end is destroyed too (autoDestroy): that is no one going away.
        const why = err ?? (this.readable.readableEnded ? undefined : new Error('tar stream closed by its reader'));
        if (why) {
          opts.onReaderGone?.(why);
          this.pack.destroy(why);
        }
        cb(err);
      },
    });
    this.pack.pipe(this.readable as unknown as NodeJS.WritableStream);
    this.pack.on('error', (err: Error) => this.readable.destroy(err));
  }

  /**
   * Add one entry. `body` is the file's data (a Buffer, or any async
   * iterable of chunks, e.g. a file's read stream: destroyed and closed by
   * the time add() returns); its length must be `header.size`.
   */
  async add(header: TarHeader, body?: Buffer | AsyncIterable<Uint8Array>): Promise<void> {
    if (Buffer.isBuffer(body)) {
      await new Promise<void>((resolve, reject) => {
        this.pack.entry({ ...header, size: body.length }, body, (err) => (err ? reject(err) : resolve())).once('error', reject);
      });
      return;
    }
    const size = header.size ?? 0;
    const done = new Promise<void>((resolve, reject) => {
      const sink = this.pack.entry({ ...header, size: body ? size : 0 }, (err) => (err ? reject(err) : resolve()));
      sink.on('error', reject); // e.g. the reader went away mid-file
      if (!body) return;
      void (async () => {
        try {
          let written = 0;
          for await (const chunk of body) {
            written += chunk.length;
            if (written > size) throw new SystemError(`${header.name} grew while it was packed`);
            if (!sink.write(chunk)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
          }
          if (written !== size) throw new SystemError(`${header.name} shrank while it was packed`);
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
      if (body instanceof Readable) {
        body.destroy();
        await finished(body).catch(() => undefined);
      }
    }
  }

  /** No more entries: write the end-of-archive blocks. */
  finish(): void {
    this.pack.finalize();
  }

  /** Abandon the archive: its reader gets `err`. */
  destroy(err: Error): void {
    this.pack.destroy(err);
    this.readable.destroy(err);
  }
}
