import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { metered, TransferProgress } from '../../migrate/progress';

test('a metered stream passes every byte and reports its end with the count, the rate and no time left', async () => {
  const seen: TransferProgress[] = [];
  const body = metered(Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(24, 2)]), 'files', 2048, (p) => seen.push(p));
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).length, 1024);
  const last = seen.at(-1)!;
  assert.equal(last.done, true);
  assert.equal(last.bytes, 1024);
  assert.equal(last.total, 2048);
  assert.ok(last.bytesPerSec > 0 && last.seconds > 0);
  assert.ok(last.etaSec !== undefined && last.etaSec > 0, 'half of the total is still to come');
  assert.equal(seen.filter((p) => p.done).length, 1);
});

test("a metered stream fails with its body's error and reports no end", async () => {
  const seen: TransferProgress[] = [];
  async function* broken() { yield Buffer.from('abc'); throw new Error('shrank while it was packed'); }
  const body = metered(Readable.from(broken()), 'memory', 10, (p) => seen.push(p));
  await assert.rejects(async () => { for await (const c of body) void c; }, /shrank while it was packed/);
  assert.equal(seen.filter((p) => p.done).length, 0);
});
