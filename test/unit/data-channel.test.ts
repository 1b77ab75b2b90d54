import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Root } from '../../lib/root';
import { connectData, DataChannel, newTicket } from '../../daemon/data-channel';
import { HostIdentity, hostIdentity } from '../../daemon/identity';
import { Logger } from '../../daemon/log';
import type { TrustedClient } from '../../daemon/trust';

/**
 * The data channel over real TLS on loopback: three identities, a server
 * trusting two of them (one revoked later), tickets named by "calls".
 */
const dirs: string[] = [];
let server: HostIdentity;
let alice: HostIdentity;
let bob: HostIdentity;
let stranger: HostIdentity;
let channel: DataChannel;
let clients: TrustedClient[];
const warnings: string[] = [];

async function identity(name: string): Promise<HostIdentity> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-data-'));
  dirs.push(dir);
  return hostIdentity(new Root(dir), name);
}

const trusted = (id: HostIdentity): TrustedClient => ({ name: id.name, fingerprint: id.fingerprint, certificatePem: id.certPem, addedAt: new Date().toISOString() });
const pinned = () => ({ certificatePem: server.certPem, fingerprint: server.fingerprint });
const read = async (s: NodeJS.ReadableStream) => { let out = ''; for await (const c of s) out += String(c); return out; };

before(async () => {
  [server, alice, bob, stranger] = await Promise.all(['server', 'alice', 'bob', 'stranger'].map(identity));
  clients = [trusted(alice), trusted(bob)];
  const log = new Logger('warn', (l) => { warnings.push(l); });
  channel = new DataChannel(server, () => clients, { handshakeMs: 1000, maxConnections: 16 }, log);
  await channel.listen('127.0.0.1', 0, clients.map((c) => c.certificatePem));
});

after(() => {
  channel?.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test('the body reaches the call that named the ticket, whichever of the two comes first', async () => {
  for (const connectFirst of [false, true]) {
    const ticket = newTicket();
    const ac = new AbortController();
    const sent = (async () => {
      const s = await connectData(alice, '127.0.0.1', channel.port, pinned(), ticket, 5000);
      s.end('hello over the data channel');
    })();
    if (connectFirst) await sent;
    const got = await channel.expect(ticket, alice.fingerprint, 5000, ac.signal);
    assert.equal(await read(got), 'hello over the data channel');
    await sent;
  }
});

test("another client's ticket, an unknown ticket and a reused one get no body", async () => {
  const ticket = newTicket();
  const ac = new AbortController();
  const waiting = channel.expect(ticket, alice.fingerprint, 3000, ac.signal);
  await assert.rejects(channel.expect(ticket, alice.fingerprint, 100, ac.signal), /used once/);
  const theirs = await connectData(bob, '127.0.0.1', channel.port, pinned(), ticket, 5000);
  theirs.end('bob pretending');
  const closed = await new Promise<boolean>((r) => { theirs.on('close', () => r(true)); theirs.resume(); });
  assert.ok(closed, "bob's connection is dropped");
  assert.ok(warnings.some((w) => w.includes("another client's ticket")), warnings.join('\n'));
  // Alice's own connection still gets through.
  const mine = await connectData(alice, '127.0.0.1', channel.port, pinned(), ticket, 5000);
  mine.end('alice');
  assert.equal(await read(await waiting), 'alice');
  // A ticket nobody names: held for the handshake time, then dropped.
  const lost = await connectData(alice, '127.0.0.1', channel.port, pinned(), newTicket(), 5000);
  lost.write('nobody asked');
  const t0 = Date.now();
  await new Promise((r) => { lost.on('close', r); lost.resume(); });
  assert.ok(Date.now() - t0 < 3000);
});

test('an untrusted certificate never completes the handshake; a server that is not the pinned one is refused', async () => {
  await assert.rejects(async () => {
    const s = await connectData(stranger, '127.0.0.1', channel.port, pinned(), newTicket(), 5000);
    // TLS 1.3: the server's refusal of the client certificate arrives after the client's handshake ends.
    await new Promise((resolve, reject) => { s.on('error', reject); s.on('close', () => reject(new Error('closed'))); s.resume(); });
  });
  await assert.rejects(connectData(alice, '127.0.0.1', channel.port, { certificatePem: server.certPem, fingerprint: alice.fingerprint }, newTicket(), 5000), /is not the pinned/);
});

test('a call that ends stops waiting; revoking a client cuts its connections', async () => {
  const ac = new AbortController();
  const waiting = channel.expect(newTicket(), alice.fingerprint, 5000, ac.signal);
  ac.abort();
  await assert.rejects(waiting, /the call ended/);

  const ticket = newTicket();
  const got = channel.expect(ticket, bob.fingerprint, 5000, new AbortController().signal);
  const s = await connectData(bob, '127.0.0.1', channel.port, pinned(), ticket, 5000);
  s.write('part');
  const body = await got;
  const cut = new Promise((r) => body.on('close', r));
  channel.cut(new Set([bob.fingerprint]));
  await cut;
});
