import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { stopWaiting, waitReadable } from '../../lib/fd-watch';
import { recvPacket, sendPacket, socketpair } from '../../lib/seqpacket';

test('many fds waited on at once all wake (no worker thread held per fd)', async () => {
  const pairs = Array.from({ length: 40 }, () => socketpair());
  try {
    const got = pairs.map(([a]) => recvPacket(a));
    // Every wait is pending before any peer writes.
    await new Promise((r) => setTimeout(r, 20));
    pairs.forEach(([, b], i) => sendPacket(b, Buffer.from(`packet ${i}`)));
    const packets = await Promise.all(got);
    assert.deepEqual(packets.map((p) => p?.data.toString()), pairs.map((_, i) => `packet ${i}`));
  } finally {
    for (const [a, b] of pairs) { fs.closeSync(a); fs.closeSync(b); }
  }
});

test('a hung-up peer wakes the waiter, and a watch can be given up', async () => {
  const [a, b] = socketpair();
  const [c, d] = socketpair();
  try {
    const hup = waitReadable(a);
    fs.closeSync(b);
    await hup;
    assert.equal(await recvPacket(a), null, 'EOF after the peer closed');
    let woke = false;
    void waitReadable(c).then(() => { woke = true; });
    stopWaiting(c);
    sendPacket(d, Buffer.from('late'));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(woke, false);
    // The fd can be watched again afterwards.
    await waitReadable(c);
  } finally {
    for (const fd of [a, c, d]) fs.closeSync(fd);
  }
});
