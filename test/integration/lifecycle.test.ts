import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, leftoverCgroups, leftoverMonitors, rootSkipReason, sleep, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped lifecycle tests: ${skip}`);

describe('a running busybox container', { skip }, () => {
  const t = new TestRoot();
  before(() => {
    t.ok(['create', 'p1', '--template', 'busybox', '--memory', '64M', '--pids', '64', '--cpus', '1']);
    t.ok(['start', 'p1']);
  });
  after(() => t.cleanup());

  test('pid 1 inside is busybox init', () => {
    assert.equal(t.ok(['exec', 'p1', '--', 'cat', '/proc/1/comm']).trim(), 'init');
    assert.match(t.ok(['exec', 'p1', '--', 'readlink', '/proc/1/exe']), /busybox/);
  });

  test('hostname is the container name', () => {
    assert.equal(t.ok(['exec', 'p1', '--', 'hostname']).trim(), 'p1');
  });

  test('/proc shows only the container processes', () => {
    const pids = t.ok(['exec', 'p1', '--', 'sh', '-c', 'ls /proc | grep -E "^[0-9]+$"']).trim().split('\n').map(Number);
    assert.ok(pids.includes(1));
    assert.ok(pids.length < 10, `expected a handful of processes, saw ${pids.length}: ${pids}`);
    assert.ok(!pids.includes(process.pid) || process.pid < 10, 'the test runner must not be visible');
  });

  test('init holds no host fd: only its console', () => {
    const fds = t.ok(['exec', 'p1', '--', 'ls', '/proc/1/fd']).trim().split(/\s+/);
    assert.deepEqual(fds.sort(), ['0', '1', '2']);
    for (const fd of fds) {
      assert.match(t.ok(['exec', 'p1', '--', 'readlink', `/proc/1/fd/${fd}`]).trim(), /^\/dev\/(pts\/\d+|console)$/);
    }
  });

  test('no host mount is visible; /sys is read-only', () => {
    const mounts = t.ok(['exec', 'p1', '--', 'cat', '/proc/mounts']);
    assert.ok(!mounts.includes(t.dir), 'the host path of the rootfs must not show');
    assert.match(mounts, /^sysfs \/sys sysfs ro,/m);
    assert.match(mounts, /^devpts \/dev\/pts devpts /m);
  });

  test('exec gets the bounding set init got (dangerous capabilities dropped)', () => {
    const bnd = (pid: string) => /CapBnd:\s+([0-9a-f]+)/.exec(t.ok(['exec', 'p1', '--', 'cat', `/proc/${pid}/status`]))![1];
    assert.equal(bnd('self'), bnd('1'));
    const CAP_SYS_MODULE = 16n;
    assert.equal((BigInt(`0x${bnd('self')}`) >> CAP_SYS_MODULE) & 1n, 0n, 'CAP_SYS_MODULE dropped');
  });

  test('exec returns the exit code of the command', () => {
    assert.equal(t.run(['exec', 'p1', '--', 'sh', '-c', 'exit 7']).status, 7);
    assert.equal(t.run(['exec', 'p1', '--', 'no-such-command']).status, 127);
  });

  test('info and list report the running container', () => {
    const info = t.info('p1');
    assert.equal(info.state, 'running');
    assert.ok(info.initPid > 1);
    assert.equal(info.config.limits.memoryBytes, 64 * 1024 * 1024);
    assert.ok(info.cgroup.memoryBytes > 0);
    assert.ok(info.cgroup.pids >= 1);
    const list = JSON.parse(t.ok(['list', '--json']));
    assert.deepEqual(list.map((c: any) => [c.name, c.state]), [['p1', 'running']]);
  });

  test('logs hold what init wrote, and keep flowing after the CLI exited', async () => {
    assert.match(t.ok(['logs', 'p1']), /tsvz: p1 is up/);
    t.ok(['exec', 'p1', '--', 'sh', '-c', 'echo marker-$((6*7)) > /dev/console']);
    assert.ok(await eventually(() => t.ok(['logs', 'p1']).includes('marker-42')), 'console output reaches the log');
    assert.equal(t.ok(['logs', 'p1', '--tail', '1']).trim().split('\n').length, 1);
  });

  test('memory limit: an allocation past it is OOM-killed and the state says so', () => {
    const r = t.run(['exec', 'p1', '--', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=128M', 'count=1']);
    assert.equal(r.status, 137, `dd should be SIGKILLed by the OOM killer: ${r.stderr}`);
    assert.ok(t.info('p1').cgroup.oomKills >= 1);
    assert.equal(t.info('p1').state, 'running', 'init survives');
  });

  test('pids limit: forks past it fail', () => {
    // An inner shell forks until it fails (and dies of it); the outer one then
    // counts and cleans up with builtins only, which need no fork.
    const script = 'sh -c "for i in \\$(seq 100); do sleep 30 </dev/null >/dev/null 2>&1 & done"; set -- /proc/[0-9]*; echo count=$#; kill -9 -1; true';
    const out = t.run(['exec', 'p1', '--', 'sh', '-c', script]);
    const count = Number(/count=(\d+)/.exec(out.stdout)?.[1]);
    assert.ok(count > 10 && count <= 64, `between 10 and 64 processes, saw ${count}`);
    assert.match(out.stderr, /can't fork|Resource temporarily unavailable/);
    assert.equal(t.info('p1').state, 'running');
  });
});

describe('lifecycle', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  test('create, start, stop, start again, destroy leaves nothing behind', async () => {
    t.ok(['create', 'c1']);
    assert.equal(t.info('c1').state, 'created');
    t.ok(['start', 'c1']);
    const first = t.info('c1').initPid;
    t.ok(['stop', 'c1', '--timeout', '5']);
    const stopped = t.info('c1');
    assert.equal(stopped.state, 'stopped');
    assert.equal(leftoverMonitors(t.dir).length, 0);
    assert.equal(leftoverCgroups(t.dir).length, 0, 'cgroups removed on stop');
    t.ok(['start', 'c1']);
    assert.notEqual(t.info('c1').initPid, first);
    t.ok(['destroy', '--force', 'c1']);
    assert.equal(fs.existsSync(path.join(t.dir, 'containers', 'c1')), false);
    assert.equal(leftoverCgroups(t.dir).length, 0);
    assert.equal(leftoverMonitors(t.dir).length, 0);
  });

  test('console.log is kept to a size: the older part moves to console.log.1', async () => {
    // 400 numbered lines of 100 bytes through the console, with a 16 KiB limit.
    const init = 'sh -c "i=0; while [ $i -lt 400 ]; do printf \'line %05d %090d\\n\' $i 0; i=$((i+1)); done; echo done-writing; sleep 600"';
    t.ok(['create', 'chatty', '--init', init]);
    t.ok(['start', 'chatty'], { env: { TSVZ_CONSOLE_LOG_MAX: String(16 * 1024) } });
    assert.ok(await eventually(() => t.ok(['logs', 'chatty', '--tail', '1']).includes('done-writing'), 20_000));
    const dir = path.join(t.dir, 'containers', 'chatty');
    const size = fs.statSync(path.join(dir, 'console.log')).size;
    assert.ok(size < 16 * 1024 + 65536, `console.log stays near its limit (${size} bytes)`);
    assert.ok(fs.existsSync(path.join(dir, 'console.log.1')), 'the older part is kept once');
    const last = t.ok(['logs', 'chatty', '--tail', '3']).trim().split('\n');
    assert.deepEqual(last.map((l) => l.slice(0, 10)), ['line 00398', 'line 00399', 'done-writi']);
    const all = t.ok(['logs', 'chatty']);
    assert.match(all, /line 00399/);
    assert.ok(!all.includes('line 00000'), 'what was pushed out twice is gone');
    t.ok(['destroy', '--force', 'chatty']);
  });

  test('an init that exits on its own is recorded with its status', async () => {
    t.ok(['create', 'short', '--init', 'sh -c "echo bye; exit 3"']);
    t.ok(['start', 'short']);
    assert.ok(await eventually(() => t.info('short').state === 'stopped'));
    assert.equal(t.info('short').exit.exitCode, 3);
    assert.match(t.ok(['logs', 'short']), /bye/);
    t.ok(['start', 'short']); // restartable after a natural exit
    t.ok(['destroy', 'short']);
  });

  test('an init killed by the OOM killer: stopped, out of memory', async () => {
    t.ok(['create', 'hog', '--memory', '32M', '--init', 'dd if=/dev/zero of=/dev/null bs=64M count=1']);
    t.ok(['start', 'hog']);
    assert.ok(await eventually(() => t.info('hog').state === 'stopped'));
    // the next locked operation reconciles: reads the OOM count before freeing the cgroup
    assert.equal(t.run(['stop', 'hog']).status, 1);
    const info = t.info('hog');
    assert.equal(info.exit.signal, 'SIGKILL');
    assert.equal(info.exit.oomKilled, true);
    t.ok(['destroy', 'hog']);
  });

  test('logs -f follows live output and ends when the container stops', async () => {
    t.ok(['create', 'f1']);
    t.ok(['start', 'f1']);
    const follower = t.spawn(['logs', '-f', 'f1']);
    let out = '';
    follower.stdout!.on('data', (d) => { out += d; });
    const ended = new Promise<number | null>((res) => follower.on('exit', res));
    t.ok(['exec', 'f1', '--', 'sh', '-c', 'echo live-$((20+3)) > /dev/console']);
    assert.ok(await eventually(() => out.includes('live-23')), `follow shows new output: ${out}`);
    t.ok(['stop', 'f1', '--timeout', '3']);
    assert.equal(await ended, 0, 'logs -f exits once the container stopped');
    t.ok(['destroy', 'f1']);
  });

  test('kill sends a signal; the state catches up', async () => {
    t.ok(['create', 'k1']);
    t.ok(['start', 'k1']);
    t.ok(['kill', 'k1', 'KILL']);
    assert.ok(await eventually(() => t.info('k1').state === 'stopped'));
    assert.equal(t.info('k1').exit.signal, 'SIGKILL');
    t.ok(['destroy', 'k1']);
  });

  test('concurrent start and destroy never interleave', async () => {
    for (let round = 0; round < 3; round++) {
      t.ok(['create', 'race']);
      const a = t.spawn(['start', 'race']);
      const b = t.spawn(['destroy', 'race']);
      const codes = await Promise.all([a, b].map((p) => new Promise<number>((res) => p.on('exit', (code) => res(code ?? -1)))));
      const exists = fs.existsSync(path.join(t.dir, 'containers', 'race'));
      if (exists) {
        // start won: destroy refused a running container, which works
        assert.equal(codes[0], 0);
        assert.equal(t.info('race').state, 'running');
        assert.equal(t.ok(['exec', 'race', '--', 'true']), '');
        t.ok(['destroy', '--force', 'race']);
      } else {
        // destroy won: start found nothing; nothing leaked
        assert.equal(codes[1], 0);
        assert.notEqual(codes[0], 0);
      }
      assert.equal(leftoverCgroups(t.dir).length, 0);
      assert.equal(leftoverMonitors(t.dir).length, 0);
    }
  });

  test('a CLI SIGKILLed mid-create leaves nothing that destroy --force cannot remove', async () => {
    const p = t.spawn(['create', 'half'], { TSVZ_FAULT: 'create:populated' });
    await waitForFault(p);
    p.kill('SIGKILL');
    await new Promise((r) => p.on('exit', r));
    assert.equal(t.run(['info', 'half']).status, 1, 'a half-created container is not a container');
    assert.ok(fs.readdirSync(path.join(t.dir, 'containers')).some((e) => e.startsWith('.creating-half-')));
    t.ok(['destroy', '--force', 'half']);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers')).filter((e) => e.includes('half')), []);
    t.ok(['create', 'half']); // the name is free again
    t.ok(['destroy', 'half']);
  });

  test('a CLI SIGKILLed mid-start: destroy --force removes cgroups, monitor and init', async () => {
    t.ok(['create', 'halfstart']);
    const p = t.spawn(['start', 'halfstart'], { TSVZ_FAULT: 'start:before-go' });
    await waitForFault(p);
    assert.ok(leftoverCgroups(t.dir).length > 0, 'start had created cgroups');
    p.kill('SIGKILL');
    await new Promise((r) => p.on('exit', r));
    t.ok(['destroy', '--force', 'halfstart']);
    assert.equal(leftoverCgroups(t.dir).length, 0);
    assert.ok(await eventually(() => leftoverMonitors(t.dir).length === 0));
  });
});

async function waitForFault(p: import('node:child_process').ChildProcess): Promise<void> {
  let err = '';
  p.stderr!.on('data', (d) => { err += d; });
  const reached = await eventually(() => err.includes('fault point'), 20_000);
  assert.ok(reached, `fault point not reached: ${err}`);
  await sleep(50);
}
