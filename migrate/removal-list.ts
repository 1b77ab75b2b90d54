import { Readable } from 'node:stream';
import { CorruptDataError, LimitError } from '../lib/errors';

/*
 * The paths a container removed between the first files pass and the
 * freeze go to the target ahead of the changes, in the same stream: a
 * 4-byte big-endian length, then a JSON array of relative paths. A gRPC
 * header would cap the list at the call's message limit (4 MiB), which a
 * tree that deleted many files outgrows.
 */

/** The list's bytes at most, whatever the upload limit (its entries are paths, checked by the unpacker). */
export const MAX_REMOVAL_LIST_BYTES = 64 * 1024 ** 2;

/** `removed`, framed, then `body`. */
export function withRemovalList(removed: string[], body: Readable): Readable {
  const list = Buffer.from(JSON.stringify(removed));
  if (list.length > MAX_REMOVAL_LIST_BYTES) throw new LimitError(`the list of removed paths is ${list.length} bytes, over ${MAX_REMOVAL_LIST_BYTES}`);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(list.length);
  return Readable.from((async function* () {
    yield length;
    yield list;
    yield* body;
  })());
}

/** The framed list at the head of `body` (at most `maxBytes`), and the stream after it. */
export async function takeRemovalList(body: Readable, maxBytes = MAX_REMOVAL_LIST_BYTES): Promise<{ removed: string[]; rest: Readable }> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let have = 0;
  let want = 4;
  let length: number | undefined;
  while (have < want) {
    const next = await it.next();
    if (next.done) throw new CorruptDataError(`the file changes ended within their list of removed paths (${have} of ${want} bytes)`);
    chunks.push(next.value);
    have += next.value.length;
    if (length === undefined && have >= 4) {
      length = Buffer.concat(chunks).readUInt32BE(0);
      if (length > Math.min(maxBytes, MAX_REMOVAL_LIST_BYTES)) throw new LimitError(`the list of removed paths sent is ${length} bytes, over ${Math.min(maxBytes, MAX_REMOVAL_LIST_BYTES)}`);
      want = 4 + length;
    }
  }
  const head = Buffer.concat(chunks);
  let removed: unknown;
  try { removed = JSON.parse(head.subarray(4, want).toString('utf8')); } catch { removed = undefined; }
  if (!Array.isArray(removed) || !removed.every((p) => typeof p === 'string')) throw new CorruptDataError('the list of removed paths sent is not a JSON array of paths');
  const after = head.subarray(want);
  const rest = Readable.from((async function* () {
    if (after.length > 0) yield after;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  })());
  // The rest closed early (its reader failed): the body goes too.
  rest.once('close', () => { if (!body.destroyed) body.destroy(); });
  return { removed: removed as string[], rest };
}
