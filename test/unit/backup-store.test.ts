import assert from 'node:assert/strict';
import crypto = require('node:crypto');
import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { packTree } from '../../archive/tree-tar';
import { Root } from '../../lib/root';
import { BackupStore, IncomingBackup } from '../../backup/store';

/** The backup store on a real dir pool: checksums decide what is registered; nothing partial stays. */
const skip = process.getuid?.() === 0 ? undefined : 'needs root (the pool keeps file owners)';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-backup-store-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tree = path.join(tmp, 'tree');
fs.mkdirSync(path.join(tree, 'root'), { recursive: true });
fs.writeFileSync(path.join(tree, 'root', 'note'), 'hello\n');

async function tarBytes(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of packTree(tree) as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

const incoming = (snapshot: string, over: Partial<IncomingBackup> = {}): IncomingBackup => ({
  source: 'AA:BB', sourceName: 'host-a', container: 'tsvz-p1', snapshot, createdAt: new Date().toISOString(), format: 'tar', configJson: '{}', ...over,
});

function volumes(root: Root): string[] {
  const dir = path.join(root.dir, 'backups', 'pools', 'backups', 'volumes');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => !n.startsWith('.')) : [];
}

describe('the backup store', { skip }, () => {
  const root = new Root(path.join(tmp, 'root'));
  root.ensure();

  test('a stream whose sha256 matches is registered', async () => {
    const data = await tarBytes();
    const store = new BackupStore(root);
    const r = await store.receive(incoming('s1'), Readable.from([data]), () => ({ sha256: crypto.createHash('sha256').update(data).digest(), bytes: data.length }));
    assert.equal(r.bytes, data.length);
    assert.deepEqual(store.list().map((b) => b.snapshot), ['s1']);
    assert.equal(store.list()[0].sha256, crypto.createHash('sha256').update(data).digest('hex'));
    assert.equal(volumes(root).length, 1);
  });

  test('a checksum that does not match: refused (ECORRUPT), nothing registered, no volume left', async () => {
    const data = await tarBytes();
    const store = new BackupStore(root);
    await assert.rejects(store.receive(incoming('s2'), Readable.from([data]), () => ({ sha256: Buffer.alloc(32), bytes: data.length })), (err: Error & { code?: string }) => err.code === 'ECORRUPT');
    await assert.rejects(store.receive(incoming('s2'), Readable.from([data]), () => undefined), /without its checksum/);
    assert.deepEqual(store.list().map((b) => b.snapshot), ['s1']);
    assert.equal(volumes(root).length, 1);
  });

  test('a stream cut off midway: nothing registered, no volume left', async () => {
    const data = await tarBytes();
    const store = new BackupStore(root);
    const cut = new Readable({ read() { /* fed below */ } });
    cut.push(data.subarray(0, 1024));
    setTimeout(() => cut.destroy(new Error('the sender went away')), 50);
    await assert.rejects(store.receive(incoming('s3'), cut, () => undefined), /the sender went away/);
    assert.deepEqual(store.list().map((b) => b.snapshot), ['s1']);
    assert.equal(volumes(root).length, 1);
  });

  test('a volume the record does not name (a daemon killed mid-receive) is removed when the store opens', async () => {
    const p = await new BackupStore(root).pool();
    await p.createVolume('t-0123456789abcdef');
    assert.equal(volumes(root).length, 2);
    await new BackupStore(root).pool();
    assert.equal(volumes(root).length, 1);
    assert.deepEqual(new BackupStore(root).list().map((b) => b.snapshot), ['s1']);
  });

  test("the store prunes by the sender's rules, or by its own when it has some", async () => {
    const data = await tarBytes();
    const sum = () => ({ sha256: crypto.createHash('sha256').update(data).digest(), bytes: data.length });
    const other = new Root(path.join(tmp, 'root-keep'));
    other.ensure();
    const send = async (store: BackupStore, snap: string, minute: number) =>
      store.receive(incoming(snap, { schedule: 'h', keep: { last: 2 }, createdAt: `2026-05-01T10:0${minute}:00Z` }), Readable.from([data]), sum);
    const senders = new BackupStore(other);
    await send(senders, 'k1', 1);
    await send(senders, 'k2', 2);
    assert.deepEqual((await send(senders, 'k3', 3)).pruned, ['k1'], "the sender's last=2");
    const own = new BackupStore(other, { keep: { last: 1 } });
    assert.deepEqual((await send(own, 'k4', 4)).pruned.sort(), ['k2', 'k3'], "this host's last=1");
    assert.deepEqual(own.list({ container: 'tsvz-p1' }).map((b) => b.snapshot), ['k4']);
    assert.equal(volumes(other).length, 1);
  });

  test('hostile headers are refused before anything is written', async () => {
    const store = new BackupStore(root);
    const empty = () => Readable.from([]);
    await assert.rejects(store.receive(incoming('s4', { container: '../etc' }), empty(), () => undefined), /contains "\.\."/);
    await assert.rejects(store.receive(incoming('../x'), empty(), () => undefined), /contains "\.\."/);
    await assert.rejects(store.receive(incoming('s4', { createdAt: 'yesterday' }), empty(), () => undefined), /is not a time/);
    await assert.rejects(store.receive(incoming('s4', { parent: 's1' }), empty(), () => undefined), /always full/);
    await assert.rejects(store.receive(incoming('s4', { format: 'zfs' }), empty(), () => undefined), /does not take zfs streams/);
    await assert.rejects(store.receive(incoming('s1'), empty(), () => undefined), /already holds backup s1/);
    await assert.rejects(store.receive(incoming('s4', { timeZone: '../../etc/localtime' }), empty(), () => undefined), /unknown time zone/);
    assert.equal(volumes(root).length, 1);
  });

  test("a backup's memory is kept only when its checksum matches and it passes the archive's checks; never for a backup the store lacks", async () => {
    const store = new BackupStore(root);
    const archive = Buffer.from('stands in for a signed checkpoint archive');
    const sum = { sha256: crypto.createHash('sha256').update(archive).digest(), bytes: archive.length };
    const stateDir = path.join(root.dir, 'backups', 'state');
    const files = () => (fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : []);
    await assert.rejects(store.receiveState('AA:BB', 'tsvz-p1', 'nope', Readable.from([archive]), () => sum, async () => undefined), /holds no backup nope/);
    await assert.rejects(store.receiveState('AA:BB', 'tsvz-p1', 's1', Readable.from([archive]), () => ({ ...sum, sha256: Buffer.alloc(32) }), async () => undefined), /does not match its checksum/);
    await assert.rejects(store.receiveState('AA:BB', 'tsvz-p1', 's1', Readable.from([archive]), () => sum, async () => { throw new Error('not signed by its sender'); }), /not signed by its sender/);
    assert.deepEqual(files(), [], 'no scratch file left');
    assert.equal(store.list()[0].state, undefined);
    let checked = '';
    assert.equal(await store.receiveState('AA:BB', 'tsvz-p1', 's1', Readable.from([archive]), () => sum, async (f) => { checked = fs.readFileSync(f, 'utf8'); }), archive.length);
    assert.equal(checked, archive.toString(), 'the check saw the bytes before they were kept');
    const b = store.list()[0];
    assert.deepEqual(b.state, { bytes: archive.length, sha256: sum.sha256.toString('hex') });
    assert.ok(fs.readFileSync(store.stateFile(b)).equals(archive));
    await assert.rejects(store.receiveState('AA:BB', 'tsvz-p1', 's1', Readable.from([archive]), () => sum, async () => undefined), /already/);
    // Another sender sees none of it.
    await assert.rejects(store.receiveState('CC:DD', 'tsvz-p1', 's1', Readable.from([archive]), () => sum, async () => undefined), /holds no backup/);
  });
});
