import type { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { TsvzError } from '../lib/errors';
import { MAX_CHUNK } from './limits';

/**
 * Byte streams over gRPC with backpressure: a writer whose write() returned
 * false waits for 'drain', raced against everything that ends the call
 * ('cancelled', 'error', 'close', 'status', the caller's abort): a grpc-js
 * writer waiting for 'drain' on a cancelled call would otherwise wait
 * forever. Bytes go in chunks of at most MAX_CHUNK. Migration and backups
 * stream their data through these too.
 */

export interface MessageWriter extends EventEmitter {
  write(message: unknown): boolean;
}

/** Resolves on 'drain'; rejects when the call ends first or `signal` aborts. */
export function drained(stream: EventEmitter, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const ended = (why: string) => () => finish(new TsvzError('ECANCELLED', why));
    const onDrain = () => finish();
    const onCancelled = ended('the call was cancelled');
    const onClose = ended('the stream closed');
    const onError = (err: unknown) => finish(err instanceof Error ? err : new TsvzError('ECANCELLED', String(err)));
    const onStatus = (s: { code?: number }) => { if (s.code !== 0) finish(new TsvzError('ECANCELLED', 'the call ended')); };
    const onAbort = () => finish(signal?.reason instanceof Error ? signal.reason : new TsvzError('ECANCELLED', 'aborted'));
    function finish(err?: Error): void {
      stream.off('drain', onDrain);
      stream.off('cancelled', onCancelled);
      stream.off('close', onClose);
      stream.off('error', onError);
      stream.off('status', onStatus);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    }
    if (signal?.aborted) return onAbort();
    stream.on('drain', onDrain);
    stream.on('cancelled', onCancelled);
    stream.on('close', onClose);
    stream.on('error', onError);
    stream.on('status', onStatus);
    signal?.addEventListener('abort', onAbort);
  });
}

/** Write one message, waiting for room when the stream is full. */
export async function writeMessage(stream: MessageWriter, message: unknown, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new TsvzError('ECANCELLED', 'aborted');
  if (stream.write(message)) return;
  await drained(stream, signal);
}

/** `data` in pieces of at most `size` bytes (views, no copies). */
export function* chunksOf(data: Buffer, size = MAX_CHUNK): Generator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, Math.min(off + size, data.length));
}

/**
 * A Node Writable whose bytes go out as Chunk messages on a gRPC stream:
 * code that writes to a stream (ops/logs.ts's streamLogs) writes to a call.
 * Its own buffer holds at most one chunk; beyond that its write() returns
 * false until the call has room again. `onBytes` counts what left.
 */
export function chunkWriter(stream: MessageWriter, signal: AbortSignal, onBytes?: (n: number) => void): Writable {
  return new Writable({
    highWaterMark: MAX_CHUNK,
    write(data: Buffer, _enc, done) {
      void (async () => {
        for (const piece of chunksOf(data)) {
          await writeMessage(stream, { data: piece }, signal);
          onBytes?.(piece.length);
        }
      })().then(() => done(), done);
    },
  });
}
