import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, rootSkipReason } from '../helpers/cli';
import { TestHost, TestNetwork } from '../helpers/netns';

/**
 * Scheduled backups end to end (docs/backups.md): two hosts in network
 * namespaces, each with its own root and daemon; a's schedule snapshots a
 * container, ships it to b's backup store over mutual TLS and prunes; b
 * restores it as a new container. The fault kills b's daemon mid-stream.
 */
const skip = rootSkipReason() ?? TestNetwork.skipReason();
if (skip) console.log(`# skipped backup e2e tests: ${skip}`);

function exitOf(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

interface Row { where: string; snapshot: string; format?: string; bytes?: number; sha256?: string; notes: string[] }

describe('scheduled backups shipped to another host', { skip }, () => {
  const net = new TestNetwork();
  let a: TestHost;
  let b: TestHost;

  const rows = (h: TestHost, ...args: string[]) => JSON.parse(h.ok(['backup', 'list', ...args, '--json'])) as Row[];
  const stored = (h: TestHost, name: string) => rows(h, name).filter((r) => r.where === 'store').map((r) => r.snapshot);
  const local = (h: TestHost, name: string) => rows(h, name).filter((r) => r.where === 'local').map((r) => r.snapshot);
  /** Volumes in b's backup store pool (a dir pool of its own under ROOT/backups). */
  const storeVolumes = (h: TestHost) => {
    try { return fs.readdirSync(path.join(h.dir, 'backups', 'pools', 'backups', 'volumes')).filter((n) => !n.startsWith('.')); } catch { return []; }
  };

  before(async () => {
    a = net.host('a');
    b = net.host('b');
    await a.startDaemon();
    await b.startDaemon();
    const token = b.ok(['trust', 'token', '--expires', '10m']).trim();
    a.ok(['remote', 'add', 'b', b.daemonAddress, '--token', token, '--as', 'a']);
  });
  after(() => net.remove());

  test('a schedule run snapshots, ships to b and prunes on both sides; b restores it as a new container with its files', () => {
    a.ok(['create', 'tsvz-p1']);
    a.ok(['start', 'tsvz-p1']);
    a.ok(['exec', 'tsvz-p1', '--', '/bin/sh', '-c', 'echo first > /root/note']);
    // A yearly cron: the daemon's timer stays out of the way of the runs below.
    assert.match(a.ok(['schedule', 'add', 'tsvz-p1', 'nightly', '--cron', '0 3 1 1 *', '--keep', 'last=2', '--to', 'b', '--tz', 'UTC']), /^added tsvz-p1\/nightly: next run \d{4}-01-01T03:00:00\.000Z\n$/);
    const out = a.ok(['schedule', 'run', 'tsvz-p1', 'nightly']);
    const m = /^(nightly-\d{8}-\d{6}-\d{3}) \((\d+) bytes shipped\)\n$/.exec(out);
    assert.ok(m, out);
    const [, first, bytes] = m;
    assert.ok(Number(bytes) > 10_000, 'a full tar of the rootfs');

    assert.deepEqual(stored(b, 'tsvz-p1'), [first]);
    const there = rows(a, 'tsvz-p1', '--on', 'b');
    assert.deepEqual(there.map((r) => [r.snapshot, r.format, r.bytes]), [[first, 'tar', Number(bytes)]]);
    assert.match(there[0].sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.ok(rows(a, 'tsvz-p1').find((r) => r.snapshot === first)?.notes.includes('the base b needs'));

    b.ok(['backup', 'restore', 'tsvz-p1', first, '--as', 'tsvz-p1-restored']);
    b.ok(['start', 'tsvz-p1-restored']);
    assert.equal(b.ok(['exec', 'tsvz-p1-restored', '--', 'cat', '/root/note']).trim(), 'first');
    b.ok(['stop', 'tsvz-p1-restored', '--timeout', '0']);
    b.ok(['destroy', 'tsvz-p1-restored']);

    // Two more runs: keep-last=2 here and there (the target applies the sender's rules).
    a.ok(['exec', 'tsvz-p1', '--', '/bin/sh', '-c', 'echo second > /root/note']);
    a.ok(['schedule', 'run', 'tsvz-p1', 'nightly']);
    a.ok(['schedule', 'run', 'tsvz-p1', 'nightly']);
    const mine = local(a, 'tsvz-p1');
    assert.equal(mine.length, 2);
    assert.ok(!mine.includes(first), 'pruned here');
    assert.deepEqual(stored(b, 'tsvz-p1'), mine, 'and there');
    assert.equal(storeVolumes(b).length, 2, 'a volume per tar backup, none left of the pruned one');

    // And restored from the remote store, fetched over the same channel, on a.
    a.ok(['backup', 'restore', 'tsvz-p1', mine[1], '--from', 'b', '--as', 'tsvz-p1-back']);
    a.ok(['start', 'tsvz-p1-back']);
    assert.equal(a.ok(['exec', 'tsvz-p1-back', '--', 'cat', '/root/note']).trim(), 'second');
    a.ok(['stop', 'tsvz-p1-back', '--timeout', '0']);
    a.ok(['destroy', 'tsvz-p1-back']);

    const list = JSON.parse(a.ok(['schedule', 'list', '--json'])) as { container: string; last?: { outcome: string; trigger: string; bytesShipped?: number } }[];
    const last = list.find((r) => r.container === 'tsvz-p1')?.last;
    assert.equal(last?.outcome, 'ok');
    assert.equal(last?.trigger, 'manual');
    assert.ok((last?.bytesShipped ?? 0) > 10_000);
  });

  test('restored over the container itself: refused while it runs; --force stops it, replaces its files, starts it; killed midway, the next command rolls its files back', async () => {
    const snap = stored(b, 'tsvz-p1').at(-1)!;
    const note = () => a.ok(['exec', 'tsvz-p1', '--', 'cat', '/root/note']).trim();
    // The default pool keeps a container's snapshots as directories beside its rootfs.
    const safetySnapshots = () => {
      try { return fs.readdirSync(path.join(a.dir, 'containers', 'tsvz-p1', 'snapshots')).filter((n) => n.startsWith('tsvz-before-restore')); } catch { return []; }
    };
    assert.equal(JSON.parse(a.ok(['info', 'tsvz-p1', '--json'])).state, 'running');
    a.ok(['exec', 'tsvz-p1', '--', '/bin/sh', '-c', 'echo third > /root/note; echo x > /root/extra']);
    const refused = a.run(['backup', 'restore', 'tsvz-p1', snap, '--from', 'b']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^tsvz: container tsvz-p1 exists and is running \(stop it first, or --force stops it, restores its files over it and starts it again\)\n$/);
    assert.equal(note(), 'third', 'nothing changed');

    assert.match(a.ok(['backup', 'restore', 'tsvz-p1', snap, '--from', 'b', '--force']), new RegExp(`^restored tsvz-p1@${snap} over tsvz-p1's files \\(\\d+ bytes, from b; its config and address kept, running\\)\n$`));
    assert.equal(JSON.parse(a.ok(['info', 'tsvz-p1', '--json'])).state, 'running', 'started again');
    assert.equal(note(), 'second', "the backup's files");
    assert.equal(a.run(['exec', 'tsvz-p1', '--', 'cat', '/root/extra']).status, 1, 'what came after the backup is gone');
    assert.deepEqual(safetySnapshots(), []);

    a.ok(['exec', 'tsvz-p1', '--', '/bin/sh', '-c', 'echo fourth > /root/note']);
    a.ok(['stop', 'tsvz-p1', '--timeout', '0']);
    const killed = a.spawn(['backup', 'restore', 'tsvz-p1', snap, '--from', 'b'], { TSVZ_FAULT: 'backup:restore-emptied' });
    let err = '';
    killed.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => err.includes('fault point backup:restore-emptied'), 60_000), err);
    assert.deepEqual(fs.readdirSync(path.join(a.dir, 'containers', 'tsvz-p1', 'rootfs')), [], 'killed with the files gone');
    killed.kill('SIGKILL');
    await new Promise((r) => killed.once('exit', r));
    a.ok(['start', 'tsvz-p1']); // takes the lock: the journal is undone first
    assert.equal(note(), 'fourth', 'rolled back to the files before the killed restore');
    assert.deepEqual(safetySnapshots(), []);
  });

  test('b killed mid-send: the snapshot stays on a, nothing partial is registered or left on b, the next run succeeds', async () => {
    const before = stored(b, 'tsvz-p1');
    await b.stopDaemon();
    await b.startDaemon([], { TSVZ_FAULT: 'backup:receiving' });
    const run = a.spawn(['schedule', 'run', 'tsvz-p1', 'nightly']);
    let err = '';
    run.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => b.daemonLog.includes('fault point backup:receiving'), 60_000), b.daemonLog);
    assert.equal(storeVolumes(b).length, before.length + 1, 'the half-received volume exists while the stream is cut');
    b.daemon!.kill('SIGKILL');
    assert.notEqual(await exitOf(run), 0);
    assert.match(err, /^tsvz: run failed: snapshot (nightly-\S+) taken, but sending it to b failed: /m);
    const cut = /snapshot (nightly-\S+) taken/.exec(err)![1];
    assert.ok(local(a, 'tsvz-p1').includes(cut), 'the snapshot stays on a');

    assert.deepEqual(stored(b, 'tsvz-p1'), before, 'nothing registered on b');
    await b.startDaemon();
    assert.ok(await eventually(() => storeVolumes(b).length === before.length, 20_000), `the restarted store sweeps the cut-off volume: ${storeVolumes(b).join(', ')}`);

    const failed = (JSON.parse(a.ok(['schedule', 'list', '--json'])) as { container: string; failures: number; last?: { outcome: string } }[]).find((r) => r.container === 'tsvz-p1');
    assert.equal(failed?.last?.outcome, 'failed');
    assert.ok((failed?.failures ?? 0) >= 1);

    const out = a.ok(['schedule', 'run', 'tsvz-p1', 'nightly']);
    const next = /^(nightly-\S+) \(\d+ bytes shipped\)/.exec(out)![1];
    const now = stored(b, 'tsvz-p1');
    assert.ok(now.includes(next));
    assert.ok(!now.includes(cut), 'the cut-off one was never registered');
    assert.equal(storeVolumes(b).length, now.length);
  });

  test("the daemon's timer runs a schedule by itself", async () => {
    a.ok(['create', 'tsvz-p2']);
    a.ok(['schedule', 'add', 'tsvz-p2', 'minutely', '--cron', '* * * * *', '--keep', 'last=1', '--tz', 'UTC']);
    const timed = () => {
      const r = (JSON.parse(a.ok(['schedule', 'list', '--json'])) as { container: string; last?: { outcome: string; trigger: string } }[]).find((x) => x.container === 'tsvz-p2');
      return r?.last?.outcome === 'ok' && (r.last.trigger === 'timer' || r.last.trigger === 'catch-up');
    };
    assert.ok(await eventually(timed, 150_000), a.daemonLog.slice(-2000));
    assert.equal(local(a, 'tsvz-p2').length, 1);
    a.ok(['schedule', 'rm', 'tsvz-p2', 'minutely']);
  });

  test('refused with one clear line: an unknown remote, a missing container, a bad cron, a zero keep rule', () => {
    for (const [args, re] of [
      [['schedule', 'add', 'tsvz-p1', 'x', '--cron', '0 * * * *', '--to', 'nowhere'], /^tsvz: no remote nowhere /],
      [['schedule', 'add', 'tsvz-none', 'x', '--cron', '0 * * * *'], /^tsvz: no such container: tsvz-none /],
      [['schedule', 'add', 'tsvz-p1', 'x', '--cron', '0 25 * * *'], /^tsvz: invalid cron expression "0 25 \* \* \*"/],
      [['schedule', 'add', 'tsvz-p1', 'x', '--cron', '0 * * * *', '--keep', 'daily=0'], /^tsvz: keep rule "daily=0" keeps nothing/],
      [['backup', 'list', 'tsvz-p1', '--on', 'nowhere'], /^tsvz: no remote nowhere /],
      [['schedule', 'add', 'tsvz-p1', 'x', '--cron', '0 * * * *', '--bwlimit', '10M'], /^tsvz: --bwlimit limits shipping: give --to too/],
      [['schedule', 'add', 'tsvz-p1', 'x', '--cron', '0 * * * *', '--keep', 'last=1', '--mode', 'pause'], /^tsvz: unknown mode "pause"/],
    ] as const) {
      const r = a.run([...args]);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });

  // Last in this suite: its backup stays in b's store, which the tests above count.
  test('a --stateful schedule ships the memory too, checked by b; restored from b under a new name it comes back running, its counter going on', async () => {
    // The counter lives in /tmp, a tmpfs: only the memory brings it back.
    a.ok(['create', 'tsvz-p4', '--init', `/bin/sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done'`]);
    a.ok(['start', 'tsvz-p4']);
    const count = (name: string) => Number(a.ok(['exec', name, '--', 'cat', '/tmp/count']).trim());
    assert.ok(await eventually(() => count('tsvz-p4') > 3, 10_000));
    a.ok(['schedule', 'add', 'tsvz-p4', 'st', '--cron', '0 3 1 1 *', '--keep', 'last=2', '--to', 'b', '--tz', 'UTC', '--stateful']);
    const before = count('tsvz-p4');
    const m = /^(st-\S+) \((\d+) bytes shipped\)\n$/.exec(a.ok(['schedule', 'run', 'tsvz-p4', 'st']));
    assert.ok(m);
    const there = rows(a, 'tsvz-p4', '--on', 'b');
    assert.deepEqual(there.map((r) => r.notes), [['full', 'with memory']]);
    assert.ok(Number(m[2]) > there[0].bytes!, 'the memory counted in what was shipped');
    try {
      assert.match(a.ok(['backup', 'restore', 'tsvz-p4', m[1], '--from', 'b', '--as', 'tsvz-p4-r']), /^restored tsvz-p4@st-\S+ as tsvz-p4-r \(\d+ bytes, from b, running\)\n$/);
      assert.equal(JSON.parse(a.ok(['info', 'tsvz-p4-r', '--json'])).state, 'running');
      const restored = count('tsvz-p4-r');
      assert.ok(restored >= before, `the counter came back from its memory (${before} → ${restored}), not from zero`);
      assert.ok(await eventually(() => count('tsvz-p4-r') > restored, 10_000), 'and goes on');
    } finally {
      a.run(['destroy', '--force', 'tsvz-p4-r']);
      a.run(['schedule', 'rm', 'tsvz-p4', 'st']);
      a.run(['destroy', '--force', 'tsvz-p4']);
    }
  });
});

function nativeSkip(driver: 'btrfs' | 'zfs'): string | undefined {
  if (skip) return skip;
  const tool = driver === 'btrfs' ? ['mkfs.btrfs', '-V'] : ['zpool', 'list'];
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  return spawnSync(tool[0], tool.slice(1), { stdio: 'ignore' }).status === 0 ? undefined : `${driver} not usable here`;
}

for (const driver of ['btrfs', 'zfs'] as const) {
  describe(`incremental shipping between ${driver} pools`, { skip: nativeSkip(driver) }, () => {
    const net = new TestNetwork();
    // Pool names unique to this run: a zpool's name is the host's.
    const store = `tsvz-bk${net.id}s`;
    const pool = `tsvz-bk${net.id}c`;
    let c: TestHost;
    let d: TestHost;
    const rows = (h: TestHost, ...args: string[]) => JSON.parse(h.ok(['backup', 'list', ...args, '--json'])) as Row[];

    before(async () => {
      c = net.host('c');
      d = net.host('d');
      d.ok(['pool', 'create', store, '--driver', driver, '--size', '256M']);
      c.ok(['pool', 'create', pool, '--driver', driver, '--size', '640M']);
      await c.startDaemon();
      // d's store in a native pool: the streams are received as they are sent.
      await d.startDaemon(['--backup-pool', store]);
      const token = d.ok(['trust', 'token', '--expires', '10m']).trim();
      c.ok(['remote', 'add', 'd', d.daemonAddress, '--token', token, '--as', 'c']);
    });
    after(async () => {
      await c?.stopDaemon();
      await d?.stopDaemon();
      c?.run(['destroy', '--force', 'tsvz-p3']);
      d?.run(['destroy', '--force', 'tsvz-p3-r']);
      c?.run(['pool', 'rm', '--force', pool]);
      d?.run(['pool', 'rm', '--force', store]);
      net.remove();
    });

    test('the second run sends only the difference from the base both hold; retention runs on both sides; d restores it', () => {
      c.ok(['create', 'tsvz-p3', '--pool', pool]);
      const rootfs = path.join(c.dir, 'containers', 'tsvz-p3', 'rootfs');
      fs.writeFileSync(path.join(rootfs, 'root', 'big'), crypto.randomBytes(8 << 20));
      c.ok(['schedule', 'add', 'tsvz-p3', 'daily', '--cron', '0 3 1 1 *', '--keep', 'last=2', '--to', 'd', '--tz', 'UTC']);
      const shipped = (out: string) => Number(/\((\d+) bytes shipped\)/.exec(out)![1]);
      const full = shipped(c.ok(['schedule', 'run', 'tsvz-p3', 'daily']));
      assert.ok(full > 8 << 20, `the first send is full (${full} bytes)`);
      fs.writeFileSync(path.join(rootfs, 'root', 'small'), 'changed\n');
      const incremental = shipped(c.ok(['schedule', 'run', 'tsvz-p3', 'daily']));
      assert.ok(incremental < 1 << 20, `the second send carries the change only (${incremental} bytes)`);
      let there = rows(c, 'tsvz-p3', '--on', 'd');
      assert.deepEqual(there.map((r) => r.format), [driver, driver]);
      assert.deepEqual(there.map((r) => r.notes[0]), ['full', `incremental from ${there[0].snapshot}`]);

      fs.writeFileSync(path.join(rootfs, 'root', 'small'), 'changed again\n');
      c.ok(['schedule', 'run', 'tsvz-p3', 'daily']);
      there = rows(c, 'tsvz-p3', '--on', 'd');
      const here = rows(c, 'tsvz-p3').filter((r) => r.where === 'local');
      assert.equal(there.length, 2, 'keep-last=2 on d');
      assert.deepEqual(here.map((r) => r.snapshot), there.map((r) => r.snapshot), 'and on c');
      assert.equal(there[1].notes[0], `incremental from ${there[0].snapshot}`);

      d.ok(['backup', 'restore', 'tsvz-p3', there[1].snapshot, '--as', 'tsvz-p3-r']);
      const restored = path.join(d.dir, 'containers', 'tsvz-p3-r', 'rootfs', 'root');
      assert.equal(fs.readFileSync(path.join(restored, 'small'), 'utf8'), 'changed again\n');
      assert.ok(fs.readFileSync(path.join(restored, 'big')).equals(fs.readFileSync(path.join(rootfs, 'root', 'big'))));
    });

    test("the store's pool full: the run fails, the snapshot stays on c, nothing is registered or kept on d; the next run sends from the held base", async () => {
      const rootfs = path.join(c.dir, 'containers', 'tsvz-p3', 'rootfs', 'root');
      const before = rows(c, 'tsvz-p3', '--on', 'd').map((r) => r.snapshot);
      const used = () => (JSON.parse(d.ok(['pool', 'list', '--json'])) as { name: string; usedBytes: number }[]).find((p) => p.name === store)!.usedBytes;
      const usedBefore = used();
      const fd = fs.openSync(path.join(rootfs, 'huge'), 'w');
      for (let i = 0; i < 300; i++) fs.writeSync(fd, crypto.randomBytes(1 << 20));
      fs.closeSync(fd);
      const r = c.run(['schedule', 'run', 'tsvz-p3', 'daily']);
      assert.notEqual(r.status, 0);
      const m = /^tsvz: run failed: snapshot (daily-[0-9-]+) taken, but sending it to d failed: /m.exec(r.stderr);
      assert.ok(m, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(rows(c, 'tsvz-p3').some((x) => x.where === 'local' && x.snapshot === m[1]), 'the snapshot stays on c');
      assert.deepEqual(rows(c, 'tsvz-p3', '--on', 'd').map((x) => x.snapshot), before, 'nothing registered on d');
      // btrfs frees a deleted subvolume's space in the background: wait for its cleaner, then commit.
      if (driver === 'btrfs') {
        const entry = (JSON.parse(fs.readFileSync(path.join(d.dir, 'pools.json'), 'utf8')) as { pools: Record<string, { record: { mountpoint: string } }> }).pools[store];
        d.exec(['btrfs', 'subvolume', 'sync', entry.record.mountpoint]);
        d.exec(['btrfs', 'filesystem', 'sync', entry.record.mountpoint]);
      }
      assert.ok(await eventually(() => used() < usedBefore + (64 << 20), 60_000), `nothing of it kept on d (${usedBefore} → ${used()} bytes used)`);

      fs.rmSync(path.join(rootfs, 'huge'));
      const out = c.ok(['schedule', 'run', 'tsvz-p3', 'daily']);
      const next = /^(daily-[0-9-]+) \((\d+) bytes shipped\)/.exec(out)!;
      assert.ok(Number(next[2]) < 1 << 20, `sent from the held base, incrementally (${next[2]} bytes)`);
      const there = rows(c, 'tsvz-p3', '--on', 'd');
      assert.equal(there.at(-1)?.snapshot, next[1]);
      assert.equal(there.at(-1)?.notes[0], `incremental from ${before.at(-1)}`);
    });
  });
}
