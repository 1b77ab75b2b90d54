import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { takeRemovalList, withRemovalList } from '../../migrate/removal-list';

async function bytesOf(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** `data` in chunks of `size` bytes, as a socket delivers it. */
function chunked(data: Buffer, size: number): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
  })());
}

test('a removal list over the 4 MiB message limit goes ahead of the changes and comes back whole, the changes after it intact', async () => {
  const removed = Array.from({ length: 200_000 }, (_, i) => `var/cache/app/entry-${i.toString().padStart(8, '0')}.tmp`);
  const changes = Buffer.from('the tar stream of the changes');
  const framed = await bytesOf(withRemovalList(removed, Readable.from([changes])));
  assert.ok(framed.length > 4 * 1024 ** 2, `the list is over 4 MiB (${framed.length} bytes)`);
  for (const size of [7, 65_536, framed.length]) {
    const got = await takeRemovalList(chunked(framed, size));
    assert.deepEqual(got.removed, removed);
    assert.deepEqual(await bytesOf(got.rest), changes);
  }
  const none = await takeRemovalList(Readable.from([await bytesOf(withRemovalList([], Readable.from([changes])))]));
  assert.deepEqual(none.removed, []);
  assert.deepEqual(await bytesOf(none.rest), changes);
});

test('a list cut short, over the bound, or not a list of paths is refused with one clear line', async () => {
  const framed = await bytesOf(withRemovalList(['etc/old'], Readable.from([Buffer.from('tar')])));
  await assert.rejects(takeRemovalList(Readable.from([framed.subarray(0, 6)])), { code: 'ECORRUPT', message: /ended within their list of removed paths \(6 of 15 bytes\)/ });
  await assert.rejects(takeRemovalList(Readable.from([framed]), 10), { code: 'ELIMIT', message: /the list of removed paths sent is 11 bytes, over 10/ });
  const bad = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('{"a":')]);
  await assert.rejects(takeRemovalList(Readable.from([bad])), { code: 'ECORRUPT', message: /not a JSON array of paths/ });
  const numbers = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('[1]')]);
  await assert.rejects(takeRemovalList(Readable.from([numbers])), { code: 'ECORRUPT', message: /not a JSON array of paths/ });
});
