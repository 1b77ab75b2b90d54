import { SystemError, TsvzError } from '../lib/errors';
import { refusalError, type Voice } from './refusal';

/**
 * A decompression stage's failure: the data is cut short or is not what it
 * claims to be. Stages cannot word it (they do not know what the archive is
 * called); the reader turns it into its caller's refusal.
 */
export class StreamFault extends Error {
  constructor(readonly kind: 'truncated' | 'corrupt', readonly format: 'tar' | 'gzip' | 'zstd', readonly detail: string) {
    super(detail);
    this.name = 'StreamFault';
  }
}

/** zlib's errors carry codes such as Z_DATA_ERROR and Z_BUF_ERROR ("unexpected end of file"). */
function zlibFault(err: NodeJS.ErrnoException): StreamFault | undefined {
  if (typeof err.code !== 'string' || !err.code.startsWith('Z_')) return undefined;
  const truncated = err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message);
  return new StreamFault(truncated ? 'truncated' : 'corrupt', 'gzip', err.message);
}

/** tar-stream's own words for a stream that ends early. */
const TRUNCATED = /unexpected end|premature|truncated|incomplete|aborted|closed/i;

/**
 * Anything a tar stream (or a stage before it) failed with, as a typed
 * error: tsvz's own errors pass through, a failed read is a SystemError,
 * damaged data a refusal worded by `voice`.
 */
export function streamFailure(err: unknown, voice: Voice): TsvzError {
  if (err instanceof TsvzError) return err;
  const e = err as NodeJS.ErrnoException;
  const fault = err instanceof StreamFault ? err : zlibFault(e);
  if (fault) {
    return refusalError(fault.kind === 'truncated' ? { kind: 'truncated', detail: fault.detail } : { kind: 'corrupt', format: fault.format, detail: fault.detail }, voice);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (typeof e?.syscall === 'string') return new SystemError(`cannot read ${voice.subject}: ${message}`, err);
  if (TRUNCATED.test(message)) return refusalError({ kind: 'truncated', detail: message }, voice);
  return refusalError({ kind: 'corrupt', format: 'tar', detail: message }, voice);
}
