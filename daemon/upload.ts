import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, LimitError, TimeoutError, TsvzError } from '../lib/errors';
import { validateName } from '../lib/names';
import { MAX_CHUNK } from './limits';
import type { ImportHeader, ImportMessage } from './proto';
import type { CallContext, DaemonContext } from './server';
import type { UploadQuota } from './upload-quota';

/**
 * An upload (ImportHeader, then chunks) into a file under ROOT/daemon/incoming/
 * whose name the daemon picks. Bounded in total bytes, in idle time and by
 * the shared disk quota; a broken limit ends the call (RESOURCE_EXHAUSTED,
 * or DEADLINE_EXCEEDED for a stall) and leaves no file behind.
 */
export async function receiveUpload(d: DaemonContext, quota: UploadQuota, input: AsyncIterable<ImportMessage>, ctx: CallContext): Promise<{ name: string; file: string; header: ImportHeader }> {
  const it = input[Symbol.asyncIterator]();
  const next = () => withIdleLimit(it.next(), d.limits.idleMs, ctx.signal);
  const first = await next();
  const header = first.done ? undefined : first.value.header;
  if (!header) throw new InvalidArgumentError('an import starts with its header');
  const name = validateName(header.name ?? '');
  if (header.sizeBytes !== undefined && header.sizeBytes > d.limits.maxUploadBytes) {
    throw new LimitError(`the archive (${header.sizeBytes} bytes) is over this host's upload limit of ${d.limits.maxUploadBytes} bytes`);
  }
  fs.mkdirSync(quota.dir, { recursive: true, mode: 0o700 });
  const file = path.join(quota.dir, `${crypto.randomBytes(8).toString('hex')}.archive`);
  const reservation = quota.open();
  const handle = await fs.promises.open(file, 'wx', 0o600);
  let ok = false;
  try {
    let total = 0;
    for (;;) {
      const r = await next();
      if (r.done) break;
      const data = r.value.chunk?.data;
      if (!data) throw new InvalidArgumentError('an import sends its header once, then chunks');
      if (data.length > MAX_CHUNK) throw new LimitError(`a chunk of ${data.length} bytes is over ${MAX_CHUNK}`);
      total += data.length;
      if (total > d.limits.maxUploadBytes) throw new LimitError(`the upload is over this host's limit of ${d.limits.maxUploadBytes} bytes`, 'the stream was stopped');
      await reservation.grow(data.length);
      await handle.write(data);
      d.metrics.streamBytes.add({ method: ctx.method, direction: 'in' }, data.length);
    }
    ok = true;
    return { name, file, header };
  } finally {
    await handle.close();
    reservation.release();
    if (!ok) fs.rmSync(file, { force: true });
  }
}

/** The next message, or ETIMEDOUT when none comes for `ms`, or the call's end. */
export function withIdleLimit<T>(p: Promise<T>, ms: number, signal: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`the upload sent nothing for ${Math.round(ms / 1000)} s`)), ms);
      onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new TsvzError('ECANCELLED', 'cancelled'));
      signal.addEventListener('abort', onAbort);
    }),
  ]).finally(() => {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
  });
}
