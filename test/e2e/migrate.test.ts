import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, rootSkipReason } from '../helpers/cli';
import { TestHost, TestNetwork } from '../helpers/netns';

/**
 * Live migration end to end (docs/migration.md): two hosts in network
 * namespaces, each with its own root and daemon, trusting each other; the
 * CLI on one moves a running container to the other over mutual TLS. The
 * faults kill the real daemons and CLIs at the protocol's steps.
 */
const skip = rootSkipReason() ?? TestNetwork.skipReason();
if (skip) console.log(`# skipped migration e2e tests: ${skip}`);

// A counter in the container's tmpfs: it carries on without a reset only if the processes moved, not restarted.
const COUNTER = `/bin/sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done'`;

function exitOf(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

describe('live migration between two hosts', { skip }, () => {
  const net = new TestNetwork();
  let a: TestHost;
  let b: TestHost;

  /** `client` trusts `server` as a remote named after it. */
  function enrol(client: TestHost, server: TestHost): void {
    const token = server.ok(['trust', 'token', '--expires', '10m']).trim();
    client.ok(['remote', 'add', server.name, server.daemonAddress, '--token', token, '--as', client.name]);
  }

  const count = (h: TestHost, name: string) => Number(h.ok(['exec', name, '--', 'cat', '/tmp/count']).trim());
  const state = (h: TestHost, name: string) => JSON.parse(h.ok(['info', name, '--json'])).state as string;
  const names = (h: TestHost) => (JSON.parse(h.ok(['list', '--json'])) as { name: string }[]).map((c) => c.name);
  const journal = (h: TestHost) => JSON.parse(h.ok(['migrate', 'list', '--json'])) as { name: string; role: string; phase: string }[];

  /** Nothing of `name` on `h`: no container, no half-built one, no frozen copy. */
  function clean(h: TestHost, name: string): void {
    assert.ok(!names(h).includes(name), `${h.name} has no ${name}`);
    const left = fs.readdirSync(path.join(h.dir, 'containers')).filter((n) => n.includes(name));
    assert.deepEqual(left, [], `${h.name} holds nothing of ${name}`);
  }

  before(async () => {
    a = net.host('a');
    b = net.host('b');
    await a.startDaemon();
    await b.startDaemon();
    enrol(a, b);
    enrol(b, a);
  });
  after(() => net.remove());

  test('a running container moves to the other host and back five times: its processes, tmpfs and files carry on', () => {
    a.ok(['create', 'p1', '--init', COUNTER]);
    a.ok(['start', 'p1']);
    a.ok(['exec', 'p1', '--', '/bin/sh', '-c', 'echo kept-on-disk > /root/note']);
    let last = 0;
    assert.ok(eventuallySync(() => (last = count(a, 'p1')) > 3));
    for (let round = 0; round < 5; round++) {
      for (const [from, to] of [[a, b], [b, a]] as const) {
        const out = from.ok(['migrate', 'p1', '--to', to.name]);
        assert.match(out, new RegExp(`^migrated p1 to ${to.name}: frozen \\d+ ms, total \\d+\\.\\d s \\(.* checkpoint, .* files, stop-and-copy\\)\\n$`));
        assert.equal(state(to, 'p1'), 'running');
        clean(from, 'p1');
        const now = count(to, 'p1');
        assert.ok(now >= last, `the counter carried on (${last} → ${now}), it was not restarted`);
        last = now;
        assert.equal(to.ok(['exec', 'p1', '--', 'cat', '/root/note']).trim(), 'kept-on-disk');
        assert.equal(to.ok(['exec', 'p1', '--', 'cat', '/proc/1/comm']).trim(), 'sh');
        assert.deepEqual(journal(from).filter((r) => r.role === 'source').map((r) => r.phase)[0], 'committed');
        assert.deepEqual(journal(to).filter((r) => r.role === 'target').map((r) => r.phase)[0], 'committed');
      }
    }
    assert.ok(eventuallySync(() => count(a, 'p1') > last), 'still counting after ten migrations');
    const json = JSON.parse(a.ok(['migrate', 'p1', '--to', 'b', '--json']));
    assert.equal(json.mode, 'stop-and-copy');
    assert.ok(json.frozenMs > 0 && json.frozenMs <= json.totalMs);
    assert.ok(json.filesBytes > 0 && json.imagesBytes > 0);
    b.ok(['migrate', 'p1', '--to', 'a']);
  });

  test('refused before anything freezes: a name taken on the target, a bad name, an unknown remote, a stopped container', () => {
    a.ok(['create', 'p2', '--init', COUNTER]);
    a.ok(['start', 'p2']);
    b.ok(['create', 'p2']);
    const taken = a.run(['migrate', 'p2', '--to', 'b']);
    assert.notEqual(taken.status, 0);
    assert.match(taken.stderr, /^tsvz: b: container p2 already exists on this host/m);
    assert.equal(state(a, 'p2'), 'running');
    assert.equal(state(b, 'p2'), 'created');
    assert.equal(journal(a).find((r) => r.name === 'p2')?.phase, 'aborted');
    b.ok(['destroy', 'p2']);

    const bad = a.run(['migrate', '../etc', '--to', 'b']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /^tsvz: container name "\.\.\/etc" contains "\.\."$/m);
    const unknown = a.run(['migrate', 'p2', '--to', 'nowhere']);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /nowhere/);
    a.ok(['stop', 'p2', '--timeout', '0']);
    assert.match(a.run(['migrate', 'p2', '--to', 'b']).stderr, /container p2 is not running/);
    a.ok(['destroy', 'p2']);
    clean(b, 'p2');
  });

  test('the target daemon killed during the transfer: the source runs on; the restarted target holds nothing', async () => {
    a.ok(['create', 'p3', '--init', COUNTER]);
    a.ok(['start', 'p3']);
    await b.stopDaemon();
    await b.startDaemon([], { TSVZ_FAULT: 'migrate:files-received' });
    const m = a.spawn(['migrate', 'p3', '--to', 'b']);
    let err = '';
    m.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => b.daemonLog.includes('fault point migrate:files-received'), 60_000), b.daemonLog);
    b.daemon!.kill('SIGKILL');
    assert.notEqual(await exitOf(m), 0);
    assert.match(err, /^tsvz: /m);
    assert.equal(state(a, 'p3'), 'running', 'CRIU resumed the source');
    const c = count(a, 'p3');
    assert.ok(await eventually(() => count(a, 'p3') > c), 'and it counts');
    assert.equal(journal(a).find((r) => r.name === 'p3')?.phase, 'aborted');
    await b.startDaemon();
    assert.ok(await eventually(() => journal(b).find((r) => r.name === 'p3')?.phase === 'aborted', 20_000), JSON.stringify(journal(b)));
    clean(b, 'p3');
  });

  test('the target killed once restored: the source runs on; the frozen copy there waits, and resolve removes it', async () => {
    await b.stopDaemon();
    await b.startDaemon([], { TSVZ_FAULT: 'migrate:restored' });
    const m = a.spawn(['migrate', 'p3', '--to', 'b']);
    assert.ok(await eventually(() => b.daemonLog.includes('fault point migrate:restored'), 60_000), b.daemonLog);
    assert.equal(state(b, 'p3'), 'frozen', 'restored and held frozen: never two running copies');
    b.daemon!.kill('SIGKILL');
    assert.notEqual(await exitOf(m), 0);
    assert.equal(state(a, 'p3'), 'running');
    await b.startDaemon();
    assert.equal(state(b, 'p3'), 'frozen', 'a restart leaves a restored copy to be resolved');
    assert.match(b.ok(['migrate', 'resolve', 'p3']), /: aborted$/m);
    clean(b, 'p3');
    assert.equal(state(a, 'p3'), 'running');
  });

  test('the source CLI killed at the switch-over: resolve on the source settles both sides; one copy runs', async () => {
    const m = a.spawn(['migrate', 'p3', '--to', 'b'], { TSVZ_FAULT: 'migrate:switching' });
    let err = '';
    m.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => err.includes('fault point migrate:switching'), 60_000), err);
    m.kill('SIGKILL');
    await exitOf(m);
    // Its CRIU lost its client before being told to kill the tree: it resumed the source.
    assert.ok(await eventually(() => state(a, 'p3') === 'running', 20_000));
    assert.equal(state(b, 'p3'), 'frozen');
    assert.match(b.run(['migrate', 'resolve', 'p3']).stderr, /switching/, 'the target waits for the source to settle');
    assert.match(a.ok(['migrate', 'resolve', 'p3']), /: aborted; b told$/m);
    clean(b, 'p3');
    assert.equal(state(a, 'p3'), 'running');
    a.ok(['destroy', '--force', 'p3']);
  });

  test('two migrations of one container at once: the second is busy', async () => {
    a.ok(['create', 'p4', '--init', COUNTER]);
    a.ok(['start', 'p4']);
    const first = a.spawn(['migrate', 'p4', '--to', 'b']);
    let err = '';
    first.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => err.includes('sending files') || first.exitCode !== null, 30_000), err);
    const second = a.run(['migrate', 'p4', '--to', 'b']);
    assert.equal(second.status, 75, second.stderr);
    assert.match(second.stderr, /^tsvz: container p4 is busy: another tsvz operation is in progress/m);
    assert.equal(await exitOf(first), 0, err);
    assert.equal(state(b, 'p4'), 'running');
    b.ok(['destroy', '--force', 'p4']);
  });
});

function eventuallySync(check: () => boolean, ms = 10_000): boolean {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
  return check();
}
