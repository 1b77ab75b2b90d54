import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Root } from '../../lib/root';
import { restoreStage } from '../../runtime/restore-stage';
import { eventually, rootSkipReason, sleep, TestRoot } from '../helpers/cli';
import { installFixture, installMemhog, readHex } from '../helpers/memhog';

const skip = rootSkipReason() ?? (spawnSync('cc', ['--version']).status !== 0 ? 'no C compiler for the memhog fixture' : undefined);
if (skip) console.log(`# skipped checkpoint tests: ${skip}`);

describe('checkpoint and restore (real CRIU)', { skip }, () => {
  const t = new TestRoot();
  const rootfs = (name: string) => path.join(t.dir, 'containers', name, 'rootfs');
  const count = (name: string) => parseInt(readHex(path.join(rootfs(name), 'memhog.count')) ?? '-1', 16);

  /** A container whose init holds `mib` MiB of distinct memory. */
  function memhogContainer(name: string, mib: number): void {
    t.ok(['create', name, '--init', `/usr/bin/memhog ${mib}`]);
    installMemhog(rootfs(name));
    t.ok(['start', name]);
  }

  before(() => memhogContainer('m1', 200));
  after(() => t.cleanup());

  test('200 MiB of memory come back bit-identical and the counter continues', async () => {
    assert.ok(await eventually(() => count('m1') >= 20, 20_000), 'memhog is counting');
    const sum = readHex(path.join(rootfs('m1'), 'memhog.sum'));
    assert.ok(sum);
    const id = t.ok(['checkpoint', 'm1']).trim();
    assert.match(id, /^\d{8}-\d{6}-\d{3}$/);
    const info = t.info('m1');
    assert.equal(info.state, 'stopped');
    assert.equal(info.checkpoint, id);
    const atDump = count('m1');
    await sleep(300);
    assert.equal(count('m1'), atDump, 'nothing runs while checkpointed');

    t.ok(['restore', 'm1']);
    assert.equal(t.info('m1').state, 'running');
    assert.ok(count('m1') >= atDump, 'no reset: the counter goes on from the dump');
    assert.ok(await eventually(() => count('m1') > atDump), 'and keeps counting');
    fs.writeFileSync(path.join(rootfs('m1'), 'memhog.ask'), '');
    assert.ok(await eventually(() => readHex(path.join(rootfs('m1'), 'memhog.now')) !== undefined, 10_000));
    assert.equal(readHex(path.join(rootfs('m1'), 'memhog.now')), sum, 'memory checksum after restore');
  });

  test('checkpoint list shows the checkpoint with CRIU version, kernel and size', () => {
    const list = JSON.parse(t.ok(['checkpoint', 'list', 'm1', '--json']));
    assert.equal(list.length, 1);
    assert.equal(list[0].container, 'm1');
    assert.match(list[0].criuVersion, /^4\./);
    assert.ok(list[0].sizeBytes > 200 * 1024 * 1024, 'the images hold the memory');
    const ckDir = path.join(t.dir, 'containers', 'm1', 'checkpoints', list[0].id);
    assert.match(fs.readFileSync(path.join(ckDir, 'dump.log'), 'utf8'), /Dumping finished successfully/, 'the dump log stays with the images');
    assert.ok(fs.existsSync(path.join(ckDir, 'stats-dump')));
    assert.ok(fs.existsSync(path.join(ckDir, 'stats-restore')), "the restore's statistics stay with the images");
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers', 'm1', 'criu-logs')).filter((f) => f.startsWith('dump-') || f.startsWith('stats-')), [], 'nothing left in the work dir');
    assert.deepEqual(fs.readdirSync(ckDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file of the record');
    t.ok(['checkpoint', 'rm', 'm1', list[0].id]);
    assert.deepEqual(JSON.parse(t.ok(['checkpoint', 'list', 'm1', '--json'])), []);
  });

  test('--leave-running keeps the container running', () => {
    const before = t.info('m1').initPid;
    const id = t.ok(['checkpoint', 'm1', '--leave-running', '--name', 'keep']).trim();
    assert.equal(id, 'keep');
    assert.equal(t.info('m1').state, 'running');
    assert.equal(t.info('m1').initPid, before);
    t.ok(['checkpoint', 'rm', 'm1', 'keep']);
  });

  test('a busybox system container: console log, exec, tmpfs, /dev and 20 cycles', async () => {
    t.ok(['create', 'sys1', '--memory', '128M']);
    t.ok(['start', 'sys1']);
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'echo kept-in-tmpfs > /tmp/note; echo before-checkpoint > /dev/console']);
    // /dev is saved and made again by tsvz (dev-tmpfs.ts): all it held comes back; devpts and the console are new.
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'mkdir /dev/keep && echo in-dev > /dev/keep/f && chmod 640 /dev/keep/f && ln /dev/keep/f /dev/keep/h && ln -s keep/f /dev/kept && mkfifo /dev/kfifo && echo in-shm > /dev/shm/seg']);
    const devListing = () => t.ok(['exec', 'sys1', '--', 'ls', '-ln', '--full-time', '/dev', '/dev/keep', '/dev/shm']).split('\n').filter((l) => !/ (console|pts)$/.test(l)).join('\n');
    const devBefore = devListing();
    for (let i = 0; i < 20; i++) {
      t.ok(['checkpoint', 'sys1']);
      t.ok(['restore', 'sys1']);
    }
    assert.equal(devListing(), devBefore, '/dev after 20 cycles');
    assert.equal(t.ok(['exec', 'sys1', '--', 'cat', '/dev/kept', '/dev/keep/h', '/dev/shm/seg']), 'in-dev\nin-dev\nin-shm\n');
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'echo gone > /dev/null && test -c /dev/null']);
    const newest = JSON.parse(t.ok(['checkpoint', 'list', 'sys1', '--json'])).pop().id;
    const images = fs.readdirSync(path.join(t.dir, 'containers', 'sys1', 'checkpoints', newest));
    assert.ok(images.includes('tsvz-dev.json'), 'tsvz listed /dev');
    // CRIU still saves the tmpfs mounts the container made itself (busybox's /tmp and /run), not /dev.
    // Binds of /dev's own tmpfs (the masks over /proc and /sys files: /dev/null and an empty directory) are /dev too.
    const mountinfo = t.ok(['exec', 'sys1', '--', 'cat', '/proc/self/mountinfo']).split('\n');
    const devSb = mountinfo.find((l) => l.split(' ')[4] === '/dev')?.split(' ')[2];
    const ownTmpfs = mountinfo.filter((l) => / - tmpfs /.test(l) && l.split(' ')[4] !== '/dev' && l.split(' ')[2] !== devSb);
    assert.equal(images.filter((f) => f.startsWith('tmpfs-')).length, ownTmpfs.length, 'CRIU saved every tmpfs but /dev');
    assert.equal(fs.existsSync(path.join(t.dir, 'containers', 'sys1', 'restore-dev')), false, 'the host keeps no /dev of the restore');
    const stage = restoreStage(new Root(t.dir).containerKey('sys1')).dir;
    const staged = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(stage));
    assert.deepEqual(staged, [], 'nor a mount of its restore stage');
    assert.equal(fs.existsSync(stage), false, 'and the stage is removed');
    assert.equal(t.ok(['exec', 'sys1', '--', 'cat', '/tmp/note']).trim(), 'kept-in-tmpfs');
    assert.equal(t.ok(['exec', 'sys1', '--', 'cat', '/proc/1/comm']).trim(), 'init');
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'echo after-restore > /dev/console']);
    assert.ok(await eventually(() => /before-checkpoint[\s\S]*after-restore/.test(t.ok(['logs', 'sys1']))), 'logs keep flowing through the new monitor');
    assert.equal(JSON.parse(t.ok(['checkpoint', 'list', 'sys1', '--json'])).length, 20);
    assert.ok(t.info('sys1').cgroup.memoryBytes > 0, 'back in its cgroups');
    t.ok(['stop', 'sys1', '--timeout', '5']);
    assert.equal(t.info('sys1').state, 'stopped');
  });

  test('refusals: wrong state, unknown or malformed id', () => {
    t.ok(['create', 'idle']);
    assert.match(t.run(['checkpoint', 'idle']).stderr, /^tsvz: container idle is not running$/m);
    assert.match(t.run(['restore', 'idle']).stderr, /has no checkpoint/);
    assert.match(t.run(['restore', 'm1']).stderr, /container m1 is running/);
    t.ok(['stop', 'm1', '--timeout', '1']);
    assert.match(t.run(['restore', 'm1', 'no-such-id']).stderr, /has no checkpoint "no-such-id"/);
    assert.match(t.run(['restore', 'm1', '../etc']).stderr, /invalid|\.\./);
    t.ok(['start', 'm1']);
  });

  test('CRIU killed mid-dump: the container is thawed and running, no partial images', async () => {
    const p = t.spawn(['checkpoint', 'm1'], { TSVZ_FAULT: 'checkpoint:frozen', TSVZ_FAULT_MS: '1500' });
    let err = '';
    p.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => err.includes('fault point'), 20_000), err);
    const criu = spawnSync('pgrep', ['-P', String(p.pid), 'criu'], { encoding: 'utf8' }).stdout.trim();
    assert.ok(criu, 'criu swrk is a child of the CLI');
    process.kill(Number(criu), 'SIGKILL');
    const code = await new Promise<number | null>((res) => p.on('exit', res));
    assert.notEqual(code, 0);
    assert.match(err, /criu dump failed/);
    const info = t.info('m1');
    assert.equal(info.state, 'running', 'thawed and running');
    const c = count('m1');
    assert.ok(await eventually(() => count('m1') > c), 'still counting');
    assert.deepEqual(JSON.parse(t.ok(['checkpoint', 'list', 'm1', '--json'])), []);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers', 'm1', 'checkpoints')), []);
  });

  test('disk full during the dump: CRIU says so, the container keeps running, partial images removed', async () => {
    const dir = path.join(t.dir, 'containers', 'm1', 'checkpoints');
    fs.mkdirSync(dir, { recursive: true });
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tsvz-test-full', dir]).status, 0);
    try {
      const r = t.run(['checkpoint', 'm1']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /criu dump failed: .*(No space left|Error)/);
      assert.match(r.stderr, /dump-\S+\.log/);
      assert.equal(t.info('m1').state, 'running');
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      spawnSync('umount', ['-l', dir]);
    }
    const c = count('m1');
    assert.ok(await eventually(() => count('m1') > c), 'still counting');
  });

  test("a process CRIU cannot dump (an io_uring) is named in the error; the container keeps running", () => {
    t.ok(['create', 'uring', '--init', '/usr/bin/uring']);
    installFixture(rootfs('uring'), 'uring');
    t.ok(['start', 'uring']);
    const r = t.run(['checkpoint', 'uring']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /^tsvz: criu dump failed: process 1 \(uring\) holds an io_uring \(fd \d+\), which CRIU cannot checkpoint \(log: \S+dump-\S+\.log\)/);
    const log = /\(log: (\S+)\)/.exec(r.stderr)![1];
    assert.ok(fs.existsSync(log), 'the log the error names is kept');
    assert.equal(t.info('uring').state, 'running');
    assert.deepEqual(JSON.parse(t.ok(['checkpoint', 'list', 'uring', '--json'])), []);
    t.ok(['destroy', '--force', 'uring']);
  });

  test('a failed restore keeps the checkpoint and the container restorable', () => {
    const id = t.ok(['checkpoint', 'm1']).trim();
    const exe = path.join(rootfs('m1'), 'usr/bin/memhog');
    fs.renameSync(exe, `${exe}.moved`);
    const r = t.run(['restore', 'm1']);
    fs.renameSync(`${exe}.moved`, exe);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /criu restore failed/);
    assert.equal(t.info('m1').state, 'stopped');
    assert.equal(t.info('m1').checkpoint, id);
    t.ok(['restore', 'm1']);
    assert.equal(t.info('m1').state, 'running');
  });
});
