import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { test } from 'node:test';
import { streamSocketpair } from '../../lib/seqpacket';
import { PageLink, pump } from '../../migrate/page-pump';

/*
 * Post-copy's pump between a socket of CRIU's and the Pages call: here the
 * call is a queue in memory and CRIU is the other end of a socketpair.
 */

/** A link whose incoming side is fed by `push`/`finish`/`break`, and whose sent bytes are kept. */
function memoryLink() {
  const queue: Buffer[] = [];
  let ended = false;
  let broken: Error | undefined;
  let wake: (() => void) | undefined;
  const sent: Buffer[] = [];
  const state = { ended: false, closed: false };
  async function* incoming(): AsyncGenerator<Buffer> {
    for (;;) {
      if (broken) throw broken;
      const next = queue.shift();
      if (next) { yield next; continue; }
      if (ended) return;
      await new Promise<void>((r) => (wake = r));
    }
  }
  const link: PageLink = {
    incoming: incoming(),
    send: async (data) => { sent.push(Buffer.from(data)); },
    end: () => { state.ended = true; },
    close: () => { state.closed = true; },
  };
  const poke = () => { const w = wake; wake = undefined; w?.(); };
  return {
    link, sent, state,
    push: (b: Buffer) => { queue.push(b); poke(); },
    finish: () => { ended = true; poke(); },
    break: (e: Error) => { broken = e; poke(); },
  };
}

function otherEnd(fd: number): net.Socket {
  return new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
}

test('bytes cross both ways in order; it ends once both sides ended', async () => {
  const [ours, criu] = streamSocketpair();
  const m = memoryLink();
  const done = pump(ours, m.link);
  const peer = otherEnd(criu);
  const got: Buffer[] = [];
  peer.on('data', (d: Buffer) => got.push(d));
  const peerEnded = new Promise<void>((r) => peer.once('end', () => r()));

  const fromCriu = randomBytes(300_000);
  const toCriu = [randomBytes(70_000), randomBytes(5), randomBytes(200_000)];
  peer.write(fromCriu);
  for (const b of toCriu) m.push(b);
  m.finish();
  await peerEnded;
  peer.end();
  await done;
  assert.deepEqual(Buffer.concat(got), Buffer.concat(toCriu), 'what the call brought reached CRIU, in order');
  assert.deepEqual(Buffer.concat(m.sent), fromCriu, "CRIU's bytes went out on the call, in order");
  assert.equal(m.state.ended, true, 'the call was told this side ended');
  peer.destroy();
});

test('a broken call fails the pump and closes the socket: CRIU sees the end', async () => {
  const [ours, criu] = streamSocketpair();
  const m = memoryLink();
  const done = pump(ours, m.link);
  const peer = otherEnd(criu);
  const closed = new Promise<void>((r) => peer.once('end', () => r()));
  peer.on('data', () => undefined);
  peer.on('error', () => undefined);
  m.push(Buffer.from('request'));
  m.break(new Error('the link went away'));
  await assert.rejects(done, /the link went away/);
  await closed;
  peer.destroy();
});

test("a failed send (the call's backpressure rejected) fails the pump", async () => {
  const [ours, criu] = streamSocketpair();
  const m = memoryLink();
  m.link.send = async () => { throw new Error('call cancelled'); };
  const done = pump(ours, m.link);
  const peer = otherEnd(criu);
  peer.on('error', () => undefined);
  peer.write(Buffer.from('pages'));
  await assert.rejects(done, /call cancelled/);
  peer.destroy();
});
