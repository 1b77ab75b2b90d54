import { Readable, Transform } from 'node:stream';
import { LimitError } from './errors';

/**
 * `input` passed on as long as it stays within `maxBytes`; past that the
 * stream fails with a LimitError (and `input` is destroyed), so a reader
 * such as `btrfs receive` never writes more than the bound. `onBytes`
 * counts what passes.
 */
export function byteLimited(input: Readable, maxBytes: number, what: string, onBytes?: (n: number) => void): Readable {
  let seen = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      onBytes?.(chunk.length);
      if (seen > maxBytes) done(new LimitError(`${what} is over this host's limit of ${maxBytes} bytes`));
      else done(null, chunk);
    },
  });
  input.on('error', (err) => out.destroy(err));
  out.on('close', () => { if (!input.destroyed) input.destroy(); });
  return input.pipe(out);
}
