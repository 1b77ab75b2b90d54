import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { mountsUnder } from '../../lib/mounts';
import { getDriver } from '../../storage/registry';
import { eventually, rootSkipReason, sleep, TestRoot } from '../helpers/cli';

/**
 * `tsvz pool`, `snapshot`, `clone` and `create --pool` on real btrfs, zfs
 * and dir pools: the whole life of a container on each, bad input, a pool
 * that fills up, a create killed half-way, checkpoint/restore on btrfs.
 * Everything is named tsvz-<tag>-...; the after hook removes every
 * container, pool, zpool, mount and loop device, even when a test failed,
 * and checks that nothing is left.
 */

const rootSkip = rootSkipReason();
const TAG = `tsvz-${crypto.randomBytes(3).toString('hex')}`;
const t = new TestRoot();
const made = { pools: [] as string[], tmpfs: [] as string[], dirs: [] as string[] };

/** What each driver misses here: asked once, before the suites are declared (at the end of this file). */
const missingHere = new Map<string, string[]>();
const suites: (() => void)[] = [];

function driverSkip(driver: string): string | undefined {
  if (rootSkip) return rootSkip;
  const missing = missingHere.get(driver)!;
  return missing.length > 0 ? missing.join('; ') : undefined;
}

/** One clear line on stderr, a non-zero exit, no stack trace. */
function assertFails(args: string[], pattern: RegExp): string {
  const r = t.run(args);
  assert.notEqual(r.status, 0, `tsvz ${args.join(' ')} should fail`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
  assert.match(lines[0], /^tsvz: /);
  assert.match(lines[0], pattern);
  return lines[0];
}

function createPool(name: string, driver: string, ...args: string[]): void {
  t.ok(['pool', 'create', name, '--driver', driver, ...args]);
  made.pools.push(name);
}

function poolRecord(name: string): Record<string, any> {
  return JSON.parse(fs.readFileSync(path.join(t.dir, 'pools.json'), 'utf8')).pools[name].record;
}

function catalogPools(): string[] {
  const file = path.join(t.dir, 'pools.json');
  return fs.existsSync(file) ? Object.keys(JSON.parse(fs.readFileSync(file, 'utf8')).pools).sort() : [];
}

const rootfs = (name: string) => path.join(t.dir, 'containers', name, 'rootfs');
const cat = (name: string, file: string) => t.ok(['exec', name, '--', 'cat', file]);
const snapshots = (name: string): any[] => JSON.parse(t.ok(['snapshot', 'list', name, '--json']));
const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });

/** A scratch directory (a dir pool's --source, a tmpfs mountpoint), removed at the end. */
function scratchDir(what: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TAG}-${what}-`));
  made.dirs.push(dir);
  return dir;
}

interface DriverCase {
  driver: 'btrfs' | 'zfs' | 'dir';
  short: string;
  args: () => string[];
  /** Is the container's volume (or any of its snapshots) still in the storage? */
  hasVolume: (pool: string, name: string) => boolean;
  /** Delete a snapshot with the driver's own tool, given the handle tsvz recorded. */
  deleteBehindBack: (handle: string) => void;
}

const CASES: DriverCase[] = [
  {
    driver: 'btrfs',
    short: 'b',
    args: () => ['--size', '256M'],
    hasVolume: (pool, name) => {
      const mnt = poolRecord(pool).mountpoint;
      return fs.existsSync(path.join(mnt, 'volumes', name)) || fs.existsSync(path.join(mnt, 'snapshots', name));
    },
    deleteBehindBack: (handle) => {
      assert.equal(sh('btrfs', ['-q', 'subvolume', 'delete', handle]).status, 0);
      fs.rmSync(path.dirname(handle), { recursive: true });
    },
  },
  {
    driver: 'zfs',
    short: 'z',
    args: () => ['--size', '128M'],
    hasVolume: (pool, name) => sh('zfs', ['list', '-H', '-t', 'all', '-o', 'name', '-r', `${poolRecord(pool).dataset}/volumes`]).stdout.split('\n').some((l) => l.split(/[/@]/).includes(name)),
    deleteBehindBack: (handle) => assert.equal(sh('zfs', ['destroy', handle]).status, 0),
  },
  {
    driver: 'dir',
    short: 'd',
    args: () => ['--source', scratchDir('dirpool')],
    hasVolume: (pool, name) => {
      const p = poolRecord(pool).path;
      return fs.existsSync(path.join(p, 'volumes', name)) || fs.existsSync(path.join(p, 'snapshots', name));
    },
    deleteBehindBack: (handle) => fs.rmSync(handle, { recursive: true }),
  },
];

for (const dc of CASES) suites.push(() => {
  const skip = driverSkip(dc.driver);
  if (skip) console.log(`# skipped ${dc.driver} pool tests: ${skip}`);

  describe(`a container on a ${dc.driver} pool`, { skip }, () => {
    const pool = `${TAG}-${dc.short}`;
    const c = `${dc.short}1`;
    const c2 = `${dc.short}2`;

    test('pool create, then create --pool: the rootfs is a volume of the pool', () => {
      createPool(pool, dc.driver, ...dc.args());
      const listed = JSON.parse(t.ok(['pool', 'list', '--json']));
      assert.deepEqual(listed.map((p: any) => p.name), ['default', ...catalogPools()]);
      assert.ok(listed.find((p: any) => p.name === pool).sizeBytes > 0);
      t.ok(['create', c, '--pool', pool]);
      assert.equal(t.info(c).pool, pool);
      assert.ok(fs.lstatSync(rootfs(c)).isSymbolicLink());
      assert.deepEqual(JSON.parse(t.ok(['pool', 'info', pool, '--json'])).volumes, [c]);
      assert.ok(fs.existsSync(path.join(rootfs(c), 'bin', 'busybox')));
    });

    test('start, write, snapshot while running, change and delete, rollback', () => {
      t.ok(['start', c]);
      t.ok(['exec', c, '--', 'sh', '-c', 'echo v1 > /data; echo keep > /keep']);
      assert.equal(t.ok(['snapshot', c, 's1']).trim(), 's1');
      const stamped = t.ok(['snapshot', 'create', c]).trim(); // the name defaults to a timestamp
      assert.match(stamped, /^\d{8}-\d{6}-\d{3}$/);
      assert.deepEqual(snapshots(c).map((s) => [s.name, s.status]), [['s1', 'ok'], [stamped, 'ok']]);
      if (dc.driver === 'zfs') {
        const pid = t.info(c).initPid;
        assertFails(['snapshot', 'rollback', c, 's1', '--force'], /roll back to the newest snapshot only, and .* has newer ones/);
        assert.equal(t.info(c).initPid, pid, 'refused before anything was stopped');
      }
      t.ok(['snapshot', 'rm', c, stamped]);
      t.ok(['exec', c, '--', 'sh', '-c', 'echo v2 > /data; rm /keep']);

      assertFails(['snapshot', 'rollback', c, 's1'], /container .* is running.*--force/);
      assert.equal(cat(c, '/data'), 'v2\n', 'a refused rollback changes nothing');

      t.ok(['stop', c]);
      assert.match(t.ok(['snapshot', 'rollback', c, 's1']), /rolled back/);
      t.ok(['start', c]);
      assert.equal(cat(c, '/data'), 'v1\n');
      assert.equal(cat(c, '/keep'), 'keep\n');
    });

    test('rollback --force stops, rolls back and restarts a running container', () => {
      t.ok(['exec', c, '--', 'sh', '-c', 'echo v3 > /data']);
      assert.match(t.ok(['snapshot', 'rollback', c, 's1', '--force']), /restarted/);
      assert.equal(t.info(c).state, 'running');
      assert.equal(cat(c, '/data'), 'v1\n');
    });

    test('a clone is independent of its origin, and protects its snapshot', () => {
      t.ok(['clone', c, c2, '--snapshot', 's1']);
      const info = t.info(c2);
      assert.equal(info.pool, pool);
      assert.deepEqual(info.config.origin, { container: c, snapshot: 's1' });
      t.ok(['start', c2]);
      assert.equal(cat(c2, '/data'), 'v1\n');
      t.ok(['exec', c2, '--', 'sh', '-c', 'echo clone > /data; echo x > /only-in-clone']);
      t.ok(['exec', c, '--', 'sh', '-c', 'echo origin > /data']);
      assert.equal(cat(c, '/data'), 'origin\n');
      assert.equal(cat(c2, '/data'), 'clone\n');
      assert.equal(fs.existsSync(path.join(rootfs(c), 'only-in-clone')), false);

      assertFails(['snapshot', 'rm', c, 's1'], new RegExp(`snapshot s1 of ${c} is the origin of clone ${c2}.*destroy that clone first`));
      assert.equal(snapshots(c)[0].status, 'ok', 'the protected snapshot is intact');
      assertFails(['pool', 'rm', pool], new RegExp(`pool ${pool} is in use by containers ${c}, ${c2}`));
    });

    test('snapshot list reconciles a snapshot deleted behind our back', () => {
      t.ok(['snapshot', c, 'gone']);
      const handle = snapshots(c).find((s) => s.name === 'gone').handle;
      dc.deleteBehindBack(handle);
      const r = t.run(['snapshot', 'list', c]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^gone\s.*MISSING/m);
      assert.deepEqual(snapshots(c).map((s) => [s.name, s.status]), [['s1', 'ok'], ['gone', 'missing']]);
      assert.match(t.ok(['snapshot', 'rm', c, 'gone']), /already gone/);
      assert.deepEqual(snapshots(c).map((s) => s.name), ['s1']);
    });

    test('destroy removes the volume and its snapshots; then pool rm works', () => {
      t.ok(['destroy', '--force', c2]);
      t.ok(['snapshot', 'rm', c, 's1']); // no clone needs it now
      t.ok(['snapshot', c, 's2']);
      assert.ok(dc.hasVolume(pool, c));
      t.ok(['destroy', '--force', c]);
      assert.equal(dc.hasVolume(pool, c), false);
      assert.equal(dc.hasVolume(pool, c2), false);
      const rec = poolRecord(pool);
      t.ok(['pool', 'rm', pool]);
      assert.ok(!catalogPools().includes(pool));
      assert.equal(fs.existsSync(path.join(t.dir, 'pools', pool)), false);
      if (dc.driver === 'zfs') assert.notEqual(sh('zpool', ['list', rec.zpool]).status, 0, 'the zpool is gone');
      if (rec.image) assert.equal(sh('losetup', ['-j', rec.image]).stdout, '', 'no loop device left');
      if (dc.driver === 'dir') assert.deepEqual(fs.readdirSync(rec.path), [], 'the --source stays, emptied');
    });
  });
});

suites.push(() => describe('bad input: one clear line, nothing made', { skip: rootSkip }, () => {
  const noPoolLeft = () => {
    assert.deepEqual(catalogPools().filter((p) => p.includes('-bad')), []);
    const dir = path.join(t.dir, 'pools');
    assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir).filter((p) => p.includes('-bad')) : [], []);
  };

  test('unknown driver, --size 0, missing or wrong sources', () => {
    assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'nosuch'], /unknown storage driver "nosuch" \(dir, btrfs, zfs, lvm\)/);
    assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'btrfs', '--size', '0'], /--size must be greater than zero/);
    assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'dir', '--source', `/nonexistent/${TAG}`], /pool source .* does not exist/);
    const file = path.join(scratchDir('file'), 'f');
    fs.writeFileSync(file, '');
    assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'dir', '--source', file], /is not a directory/);
    if (!driverSkip('btrfs')) {
      assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'btrfs', '--source', scratchDir('notbtrfs')], /not on a btrfs filesystem/);
    }
    if (!driverSkip('zfs')) {
      assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'zfs', '--source', `${TAG}-nosuch/ds`], /zfs dataset .* does not exist/);
    }
    const lvmMissing = missingHere.get('lvm')!;
    if (lvmMissing.length > 0) {
      assertFails(['pool', 'create', `${TAG}-bad`, '--driver', 'lvm', '--size', '256M'], new RegExp(`lvm cannot be used on this host: ${lvmMissing[0]}`));
    }
    assertFails(['pool', 'create', 'a/b', '--driver', 'dir'], /pool name "a\/b" is invalid/);
    noPoolLeft();
  });

  test('a pool name clash, and the built-in default pool', () => {
    createPool(`${TAG}-clash`, 'dir');
    assertFails(['pool', 'create', `${TAG}-clash`, '--driver', 'dir'], /pool .*-clash already exists/);
    assertFails(['pool', 'create', 'default', '--driver', 'dir'], /pool default already exists/);
    assertFails(['pool', 'rm', 'default'], /cannot be removed/);
    assertFails(['pool', 'rm', `${TAG}-nosuch`], /no such pool/);
    assertFails(['create', 'nopool', '--pool', `${TAG}-nosuch`], /no such pool/);
    assert.equal(fs.existsSync(path.join(t.dir, 'containers', 'nopool')), false);
    t.ok(['pool', 'rm', `${TAG}-clash`]);
    assert.ok(!catalogPools().includes(`${TAG}-clash`));
  });

  test('snapshots: a missing one, a bad name, a clash (default pool)', () => {
    t.ok(['create', 'plain']);
    assert.equal(t.info('plain').pool, 'default');
    assertFails(['snapshot', 'rollback', 'plain', 'nosuch'], /container plain has no snapshot "nosuch"/);
    assertFails(['snapshot', 'rm', 'plain', 'nosuch'], /has no snapshot/);
    assertFails(['snapshot', 'plain', 'bad/name'], /snapshot name "bad\/name" is invalid/);
    assertFails(['snapshot', 'plain', '..'], /contains "\.\."/);
    assertFails(['clone', 'plain', 'plain2', '--snapshot', 'nosuch'], /has no snapshot/);
    assert.equal(fs.existsSync(path.join(t.dir, 'containers', 'plain2')), false);
    t.ok(['snapshot', 'plain', 'one']);
    assertFails(['snapshot', 'plain', 'one'], /already has a snapshot "one"/);
    assertFails(['clone', 'plain', 'plain'], /already exists/);
    // The default pool keeps today's layout: a directory, snapshots beside it.
    assert.ok(fs.lstatSync(rootfs('plain')).isDirectory());
    assert.ok(fs.existsSync(path.join(t.dir, 'containers', 'plain', 'snapshots', 'one', 'bin', 'busybox')));
    t.ok(['destroy', 'plain']);
  });
}));

suites.push(() => describe('a pool that fills up during a snapshot or clone', { skip: rootSkip }, () => {
  test('the error says so; the container and its snapshots are intact; nothing half-made stays', () => {
    const mnt = scratchDir('tmpfs');
    assert.equal(sh('mount', ['-t', 'tmpfs', '-o', 'size=12M', `${TAG}-full`, mnt]).status, 0);
    made.tmpfs.push(mnt);
    const pool = `${TAG}-full`;
    createPool(pool, 'dir', '--source', mnt);
    t.ok(['create', 'full1', '--pool', pool]);
    t.ok(['start', 'full1']);
    t.ok(['exec', 'full1', '--', 'sh', '-c', 'echo v1 > /data; dd if=/dev/urandom of=/big bs=1M count=3 2>/dev/null']);
    t.ok(['snapshot', 'full1', 's1']); // one copy fits
    const catalogBefore = fs.readFileSync(path.join(t.dir, 'containers', 'full1', 'snapshots.json'), 'utf8');

    assertFails(['snapshot', 'full1', 's2'], new RegExp(`cannot snapshot full1@s2: pool ${pool} is full`));
    assertFails(['clone', 'full1', 'full2'], new RegExp(`cannot clone full1 to full2: pool ${pool} is full`));

    assert.equal(t.info('full1').state, 'running', 'running and thawed');
    assert.equal(cat('full1', '/data'), 'v1\n');
    assert.deepEqual(snapshots('full1').map((s) => [s.name, s.status]), [['s1', 'ok']]);
    assert.equal(fs.readFileSync(path.join(t.dir, 'containers', 'full1', 'snapshots.json'), 'utf8'), catalogBefore, 'no catalog entry');
    assert.deepEqual(fs.readdirSync(path.join(mnt, 'snapshots', 'full1')), ['s1'], 'no half-made copy');
    assert.deepEqual(fs.readdirSync(path.join(mnt, 'volumes')), ['full1']);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers')).filter((e) => e.includes('full2')), []);
    // A dir rollback copies too: it fails as cleanly, and the container runs again on what it had.
    t.ok(['exec', 'full1', '--', 'sh', '-c', 'echo v2 > /data']);
    assertFails(['snapshot', 'rollback', 'full1', 's1', '--force'], new RegExp(`cannot roll back full1 to s1: pool ${pool} is full`));
    assert.equal(t.info('full1').state, 'running', 'started again');
    assert.equal(cat('full1', '/data'), 'v2\n');
    assert.deepEqual(fs.readdirSync(path.join(mnt, 'volumes')), ['full1'], 'no half-made copy');
    assert.deepEqual(snapshots('full1').map((s) => [s.name, s.status]), [['s1', 'ok']]);

    t.ok(['destroy', '--force', 'full1']);
    t.ok(['pool', 'rm', pool]);
  });
}));

suites.push(() => describe('a btrfs pool: half-made creates, checkpoint and restore', { skip: driverSkip('btrfs') }, () => {
  const pool = `${TAG}-ck`;

  test('destroy --force removes the volume of a create killed half-way', async () => {
    createPool(pool, 'btrfs', '--size', '256M');
    const p = t.spawn(['create', 'half', '--pool', pool], { TSVZ_FAULT: 'create:populated' });
    let err = '';
    p.stderr!.on('data', (d) => { err += d; });
    assert.ok(await eventually(() => err.includes('fault point'), 20_000), `fault point not reached: ${err}`);
    await sleep(50);
    p.kill('SIGKILL');
    await new Promise((r) => p.on('exit', r));
    const volumes = () => JSON.parse(t.ok(['pool', 'info', pool, '--json'])).volumes;
    assert.deepEqual(volumes(), ['half']);
    assertFails(['pool', 'rm', pool], /in use by container half \(half-created\)/);
    t.ok(['destroy', '--force', 'half']);
    assert.deepEqual(volumes(), []);
    t.ok(['create', 'half', '--pool', pool]); // the name is free again
    t.ok(['destroy', 'half']);
  });

  test('after a reboot, two commands that open the pool at once attach it once', async () => {
    t.ok(['create', 'rb1', '--pool', pool]);
    t.ok(['create', 'rb2', '--pool', pool]);
    const rec = poolRecord(pool);
    // A reboot: the pool's mount and loop device are gone.
    const poolDir = path.join(t.dir, 'pools', pool);
    for (const m of mountsUnder(poolDir).sort((a, b) => b.length - a.length)) assert.equal(sh('umount', [m]).status, 0, m);
    assert.deepEqual(mountsUnder(poolDir), []);
    for (const line of sh('losetup', ['-j', rec.image]).stdout.split('\n').filter(Boolean)) sh('losetup', ['-d', line.split(':')[0]]);
    const both = ['rb1', 'rb2'].map((name) => {
      const p = t.spawn(['snapshot', name, 'after-reboot']);
      let err = '';
      p.stderr!.on('data', (d) => { err += d; });
      return new Promise<string>((resolve) => p.on('exit', (code) => resolve(`${code} ${err}`)));
    });
    assert.deepEqual(await Promise.all(both), ['0 ', '0 ']);
    assert.equal(sh('losetup', ['-j', rec.image]).stdout.trim().split('\n').length, 1, 'one loop device for the image');
    assert.deepEqual(snapshots('rb1').map((x) => x.name), ['after-reboot']);
    t.ok(['destroy', 'rb1']);
    t.ok(['destroy', 'rb2']);
  });

  test('checkpoint and restore round trip of a container whose rootfs is a btrfs volume', async () => {
    const count = () => Number(fs.readFileSync(path.join(rootfs('ck'), 'count'), 'utf8').trim() || -1);
    t.ok(['create', 'ck', '--pool', pool, '--init', `sh -c 'i=0; while :; do i=$((i+1)); echo $i > /count; usleep 50000; done'`]);
    t.ok(['start', 'ck']);
    assert.ok(await eventually(() => fs.existsSync(path.join(rootfs('ck'), 'count')) && count() >= 3, 10_000), 'the counter runs');
    const id = t.ok(['checkpoint', 'ck']).trim();
    assert.equal(t.info('ck').checkpoint, id);
    const atDump = count();
    await sleep(200);
    assert.equal(count(), atDump, 'nothing runs while checkpointed');
    t.ok(['restore', 'ck']);
    assert.equal(t.info('ck').state, 'running');
    assert.ok(await eventually(() => count() > atDump + 2), 'the counter goes on from where it was');
    assert.ok(count() < atDump + 100, 'not restarted from zero');
    t.ok(['destroy', '--force', 'ck']);
    t.ok(['pool', 'rm', pool]);
  });
}));

suites.push(() => after(() => {
  if (rootSkip) return;
  const problems: string[] = [];
  const containersDir = path.join(t.dir, 'containers');
  const names = new Set<string>();
  try {
    for (const e of fs.readdirSync(containersDir)) names.add(e.replace(/^\.creating-(.*)-[0-9a-f]{8}$/, '$1'));
  } catch { /* none */ }
  for (const n of names) t.run(['destroy', '--force', n]);
  for (const p of made.pools) {
    if (!catalogPools().includes(p)) continue;
    problems.push(`pool ${p} left by a test`);
    const r = t.run(['pool', 'rm', '--force', p]);
    if (r.status !== 0) problems.push(`pool rm ${p}: ${r.stderr.trim()}`);
  }
  // Whatever a failed test (or a failed pool rm) left: zpools, mounts, loop devices named after this run.
  const zpools = sh('zpool', ['list', '-H', '-o', 'name']).stdout?.split('\n').filter((n) => n.startsWith(TAG)) ?? [];
  for (const z of zpools) sh('zpool', ['destroy', '-f', z]);
  const real = fs.realpathSync(t.dir);
  for (const m of mountsUnder(real)) sh('umount', ['-l', m]);
  for (const m of made.tmpfs) sh('umount', ['-l', m]);
  const loops = (sh('losetup', ['-a']).stdout ?? '').split('\n').filter((l) => l.includes(real));
  for (const l of loops) sh('losetup', ['-d', l.split(':')[0]]);
  t.cleanup();
  for (const d of made.dirs) fs.rmSync(d, { recursive: true, force: true });
  if (zpools.length || loops.length) problems.push(`left behind: ${[...zpools, ...loops].join(', ')}`);
  const mounts = (sh('mount', []).stdout ?? '').split('\n').filter((l) => l.includes(TAG));
  if (mounts.length) problems.push(`mounts left: ${mounts.join('; ')}`);
  assert.deepEqual(problems, []);
}));

// The suites are declared once every driver has said what it misses (its probes run tools).
void (async () => {
  for (const driver of ['btrfs', 'zfs', 'dir', 'lvm']) missingHere.set(driver, await getDriver(driver).missing());
  for (const declare of suites) declare();
})();
