import assert from 'node:assert/strict';
import crypto = require('node:crypto');
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { throttle } from '../../backup/throttle';

async function pass(data: Buffer, rate: number): Promise<{ out: Buffer; ms: number }> {
  const started = performance.now();
  const parts: Buffer[] = [];
  const chunks = Array.from({ length: data.length / 16384 }, (_, i) => data.subarray(i * 16384, (i + 1) * 16384));
  for await (const c of Readable.from(chunks).pipe(throttle(rate)) as AsyncIterable<Buffer>) parts.push(c);
  return { out: Buffer.concat(parts), ms: performance.now() - started };
}

test('a bandwidth limit holds the average rate, and passes every byte in order', async () => {
  const data = crypto.randomBytes(512 * 1024);
  // 512 KiB at 256 KiB/s: the first second's worth at once, the rest over one more second.
  const slow = await pass(data, 256 * 1024);
  assert.ok(slow.out.equals(data));
  assert.ok(slow.ms >= 900, `took ${slow.ms} ms`);
  assert.ok(slow.ms < 3000, `took ${slow.ms} ms`);
  const fast = await pass(data, 64 * 1024 * 1024);
  assert.ok(fast.out.equals(data));
  assert.ok(fast.ms < 500, `took ${fast.ms} ms`);
});
