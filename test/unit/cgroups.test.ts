import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ContainerCgroups, detectCgroupMode } from '../../runtime/cgroups';
import { errnoCode } from '../../lib/errors';
import { DEVICE_RULES } from '../../runtime/cgroups/v1';
import { InvalidArgumentError, NotSupportedError, SystemError } from '../../lib/errors';

/*
 * A fake cgroup tree in a temp dir. Unlike cgroupfs, a fake dir does not
 * grow control files by itself, so each test lays out the files the kernel
 * would show before calling into the code under test.
 */
let root: string;
beforeEach(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-cg-'));
});
afterEach(async () => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** Write `files` (name → content) into dir under the fake root, creating dirs. */
function lay(dir: string, files: Record<string, string> = {}): string {
  const full = path.join(root, dir);
  fs.mkdirSync(full, { recursive: true });
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(full, name), content);
  return full;
}

function read(file: string): string {
  return fs.readFileSync(path.join(root, file), 'utf8');
}

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'devices'];

/** v1 hierarchy roots (each a cgroup: has cgroup.procs), plus cpuset which we never join. */
function layV1Roots(controllers = V1_CONTROLLERS): void {
  for (const c of [...controllers, 'cpuset']) lay(c, { 'cgroup.procs': '' });
}

/** The files the kernel would put in a fresh v1 leaf. */
function layV1Leaf(leaf: string, opts: { memsw?: boolean } = {}): void {
  lay(`memory/tsvz/${leaf}`, {
    'cgroup.procs': '',
    'memory.limit_in_bytes': '9223372036854771712\n',
    ...(opts.memsw === false ? {} : { 'memory.memsw.limit_in_bytes': '9223372036854771712\n' }),
  });
  lay(`cpu/tsvz/${leaf}`, { 'cgroup.procs': '', 'cpu.cfs_period_us': '100000\n', 'cpu.cfs_quota_us': '-1\n' });
  lay(`cpuacct/tsvz/${leaf}`, { 'cgroup.procs': '' });
  lay(`pids/tsvz/${leaf}`, { 'cgroup.procs': '', 'pids.max': 'max\n' });
  lay(`freezer/tsvz/${leaf}`, { 'cgroup.procs': '', 'freezer.state': 'THAWED\n' });
  lay(`devices/tsvz/${leaf}`, { 'cgroup.procs': '', 'devices.allow': '', 'devices.deny': '', 'devices.list': 'a *:* rwm\n' });
}

/** A v2 root offering the usual controllers, with tsvz/ already populated as the kernel would after enabling. */
function layV2(leaf: string): void {
  lay('.', { 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n', 'cgroup.subtree_control': '\n', 'cgroup.procs': '' });
  lay('tsvz', { 'cgroup.controllers': 'cpu memory pids\n', 'cgroup.subtree_control': '\n', 'cgroup.procs': '' });
  lay(`tsvz/${leaf}`, {
    'cgroup.procs': '',
    'cgroup.freeze': '0\n',
    'cgroup.kill': '',
    'memory.max': 'max\n',
    'memory.swap.max': 'max\n',
    'cpu.max': 'max 100000\n',
    'pids.max': 'max\n',
  });
}

const LIMITS = { memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pids: 16 };

describe('detectCgroupMode', () => {
  it('is v2 when the mount root has cgroup.controllers', async () => {
    lay('.', { 'cgroup.controllers': 'cpu memory pids\n' });
    assert.equal(detectCgroupMode(root), 'v2');
  });

  it('is hybrid when a unified dir has cgroup.controllers', async () => {
    layV1Roots();
    lay('unified', { 'cgroup.controllers': '' });
    assert.equal(detectCgroupMode(root), 'hybrid');
  });

  it('is v1 otherwise (including a unified dir that is not cgroup2, and an empty root)', async () => {
    layV1Roots();
    assert.equal(detectCgroupMode(root), 'v1');
    lay('unified');
    assert.equal(detectCgroupMode(root), 'v1');
    assert.equal(detectCgroupMode(path.join(root, 'nowhere')), 'v1');
  });
});

describe('ContainerCgroups names', () => {
  for (const bad of ['', '.', '..', 'a/b', '../p1', 'p1/..', 'x..y', 'nul\0']) {
    it(`rejects the leaf ${JSON.stringify(bad)}`, () => {
      assert.throws(() => new ContainerCgroups(bad, { mountRoot: root, mode: 'v2' }), InvalidArgumentError);
    });
  }

  it('rejects malformed limits before touching anything', async () => {
    layV2('p1');
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    for (const limits of [{ memoryBytes: 0 }, { memoryBytes: 1.5 }, { cpus: -1 }, { cpus: NaN }, { pids: 0 }]) {
      await assert.rejects(async () => cg.create(limits), InvalidArgumentError, JSON.stringify(limits));
    }
    assert.equal(read('cgroup.subtree_control'), '\n');
  });
});

describe('ContainerCgroups paths', () => {
  it('v1: one leaf per mounted controller, in a fixed order, skipping absent ones and cpuset', async () => {
    layV1Roots(['memory', 'pids', 'freezer']);
    const cg = new ContainerCgroups('3fa2c1d0-p1', { mountRoot: root });
    assert.equal(cg.mode, 'v1');
    assert.deepEqual(cg.procsFiles(), [
      `${root}/memory/tsvz/3fa2c1d0-p1/cgroup.procs`,
      `${root}/pids/tsvz/3fa2c1d0-p1/cgroup.procs`,
      `${root}/freezer/tsvz/3fa2c1d0-p1/cgroup.procs`,
    ]);
    assert.equal(cg.freezerPath(), `${root}/freezer/tsvz/3fa2c1d0-p1`);
    assert.equal(cg.unifiedPath(), undefined);
  });

  it('v1: a bare directory is not a mounted controller', async () => {
    layV1Roots(['memory']);
    lay('pids'); // no cgroup.procs: nothing mounted there
    assert.deepEqual(new ContainerCgroups('p1', { mountRoot: root }).procsFiles(), [`${root}/memory/tsvz/p1/cgroup.procs`]);
  });

  it('v1: co-mounted controllers (cpu,cpuacct behind symlinks) share one leaf', async () => {
    lay('cpu,cpuacct', { 'cgroup.procs': '' });
    fs.symlinkSync('cpu,cpuacct', path.join(root, 'cpu'));
    fs.symlinkSync('cpu,cpuacct', path.join(root, 'cpuacct'));
    layV1Roots(['memory']);
    assert.deepEqual(new ContainerCgroups('p1', { mountRoot: root }).procsFiles(), [
      `${root}/memory/tsvz/p1/cgroup.procs`,
      `${root}/cpu/tsvz/p1/cgroup.procs`,
    ]);
  });

  it('hybrid: every v1 leaf plus unified/tsvz/<leaf>', async () => {
    layV1Roots();
    lay('unified', { 'cgroup.controllers': '', 'cgroup.procs': '' });
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.equal(cg.mode, 'hybrid');
    assert.deepEqual(cg.procsFiles(), [
      ...V1_CONTROLLERS.map((c) => `${root}/${c}/tsvz/p1/cgroup.procs`),
      `${root}/unified/tsvz/p1/cgroup.procs`,
    ]);
    assert.equal(cg.freezerPath(), `${root}/freezer/tsvz/p1`);
    assert.equal(cg.unifiedPath(), `${root}/unified/tsvz/p1`);
  });

  it('v2: a single leaf under tsvz/', async () => {
    layV2('p1');
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.equal(cg.mode, 'v2');
    assert.deepEqual(cg.procsFiles(), [`${root}/tsvz/p1/cgroup.procs`]);
    assert.equal(cg.freezerPath(), undefined);
    assert.equal(cg.unifiedPath(), `${root}/tsvz/p1`);
  });

  it('an explicit mode overrides detection', async () => {
    layV1Roots();
    assert.deepEqual(new ContainerCgroups('p1', { mountRoot: root, mode: 'v2' }).procsFiles(), [`${root}/tsvz/p1/cgroup.procs`]);
  });
});

describe('ContainerCgroups.create v1', () => {
  it('writes memory (and memsw), CPU quota, pids and the device whitelist', async () => {
    layV1Roots();
    layV1Leaf('p1');
    await new ContainerCgroups('p1', { mountRoot: root }).create(LIMITS);
    const leaf = 'tsvz/p1';
    assert.equal(read(`memory/${leaf}/memory.limit_in_bytes`), '67108864\n');
    assert.equal(read(`memory/${leaf}/memory.memsw.limit_in_bytes`), '67108864\n');
    assert.equal(read(`cpu/${leaf}/cpu.cfs_period_us`), '100000\n');
    assert.equal(read(`cpu/${leaf}/cpu.cfs_quota_us`), '50000\n');
    assert.equal(read(`pids/${leaf}/pids.max`), '16\n');
    assert.equal(read(`devices/${leaf}/devices.deny`), 'a\n');
    assert.deepEqual(read(`devices/${leaf}/devices.allow`).trim().split('\n'), [...DEVICE_RULES]);
    assert.ok(DEVICE_RULES.includes('c 136:* rwm') && DEVICE_RULES.includes('c *:* m') && DEVICE_RULES.includes('b *:* m'));
  });

  it('writes "unlimited" for every limit not given', async () => {
    layV1Roots();
    layV1Leaf('p1');
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    await cg.create(LIMITS);
    await cg.create({});
    assert.equal(read('memory/tsvz/p1/memory.limit_in_bytes'), '-1\n');
    assert.equal(read('memory/tsvz/p1/memory.memsw.limit_in_bytes'), '-1\n');
    assert.equal(read('cpu/tsvz/p1/cpu.cfs_quota_us'), '-1\n');
    assert.equal(read('pids/tsvz/p1/pids.max'), 'max\n');
  });

  it('rounds tiny CPU shares up to the kernel minimum quota of 1 ms', async () => {
    layV1Roots();
    layV1Leaf('p1');
    await new ContainerCgroups('p1', { mountRoot: root }).create({ cpus: 0.001 });
    assert.equal(read('cpu/tsvz/p1/cpu.cfs_quota_us'), '1000\n');
  });

  it('does without memsw when swap accounting is off', async () => {
    layV1Roots();
    layV1Leaf('p1', { memsw: false });
    await new ContainerCgroups('p1', { mountRoot: root }).create(LIMITS);
    assert.equal(read('memory/tsvz/p1/memory.limit_in_bytes'), '67108864\n');
    assert.equal(fs.existsSync(path.join(root, 'memory/tsvz/p1/memory.memsw.limit_in_bytes')), false);
  });

  it('leaves an identical device whitelist alone', async () => {
    layV1Roots();
    layV1Leaf('p1');
    fs.writeFileSync(path.join(root, 'devices/tsvz/p1/devices.list'), [...DEVICE_RULES].reverse().join('\n') + '\n');
    await new ContainerCgroups('p1', { mountRoot: root }).create({});
    assert.equal(read('devices/tsvz/p1/devices.deny'), '');
  });

  it('creates missing leaf dirs (the kernel would fill them) and reuses existing ones', async () => {
    layV1Roots(['freezer']);
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.equal(cg.exists(), false);
    await cg.create({});
    await cg.create({});
    assert.equal(cg.exists(), true);
    assert.ok(fs.statSync(path.join(root, 'freezer/tsvz/p1')).isDirectory());
  });

  it('refuses a limit whose controller is not mounted, and cleans up what it made', async () => {
    layV1Roots(['cpu', 'freezer']);
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    await assert.rejects(async () => cg.create({ memoryBytes: 1 << 20 }), (err: unknown) => {
      assert.ok(err instanceof NotSupportedError);
      assert.match(err.message, /cannot set memory limit: the memory cgroup controller is not available/);
      return true;
    });
    assert.equal(cg.exists(), false);
    assert.equal(fs.existsSync(path.join(root, 'cpu/tsvz')), false);
  });

  it('names the file in a write failure', async () => {
    layV1Roots();
    layV1Leaf('p1');
    const file = path.join(root, 'pids/tsvz/p1/pids.max');
    fs.rmSync(file);
    fs.mkdirSync(file); // writing a directory fails like a kernel refusal would
    await assert.rejects(async () => new ContainerCgroups('p1', { mountRoot: root }).create({ pids: 16 }), (err: unknown) => {
      assert.ok(err instanceof SystemError);
      assert.equal(err.message, `cannot set pids limit: write ${file}: Is a directory`);
      return true;
    });
    // An existing cgroup is never torn down by a failed re-apply.
    assert.ok(fs.existsSync(path.join(root, 'memory/tsvz/p1')));
  });

  it('sees the errno inside a SystemError (the memsw-first retry keys on EINVAL)', async () => {
    const einval = Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
    assert.equal(errnoCode(new SystemError('cannot set memory limit', einval)), 'EINVAL');
    assert.equal(errnoCode(einval), 'EINVAL');
    assert.equal(errnoCode(new Error('plain')), undefined);
  });

  it('throws NotSupportedError when no hierarchy is mounted at all', async () => {
    await assert.rejects(async () => new ContainerCgroups('p1', { mountRoot: root }).create({}), NotSupportedError);
  });
});

describe('ContainerCgroups.create v2', () => {
  it('enables memory, cpu and pids down the chain, then writes the limits', async () => {
    layV2('p1');
    await new ContainerCgroups('p1', { mountRoot: root }).create(LIMITS);
    assert.equal(read('cgroup.subtree_control'), '+memory +cpu +pids\n');
    assert.equal(read('tsvz/cgroup.subtree_control'), '+memory +cpu +pids\n');
    assert.equal(read('tsvz/p1/memory.max'), '67108864\n');
    assert.equal(read('tsvz/p1/memory.swap.max'), '0\n');
    assert.equal(read('tsvz/p1/cpu.max'), '50000 100000\n');
    assert.equal(read('tsvz/p1/pids.max'), '16\n');
  });

  it('does not rewrite controllers that are already enabled, nor ask for unavailable ones', async () => {
    layV2('p1');
    fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'memory pids\n');
    fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), 'memory\n');
    fs.writeFileSync(path.join(root, 'tsvz/cgroup.subtree_control'), 'cpu memory pids\n');
    await new ContainerCgroups('p1', { mountRoot: root }).create({});
    assert.equal(read('cgroup.subtree_control'), '+pids\n');
    assert.equal(read('tsvz/cgroup.subtree_control'), 'cpu memory pids\n');
  });

  it('writes "max" for limits not given, and skips memory.swap.max when absent', async () => {
    layV2('p1');
    fs.rmSync(path.join(root, 'tsvz/p1/memory.swap.max'));
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    await cg.create(LIMITS);
    await cg.create({});
    assert.equal(read('tsvz/p1/memory.max'), 'max\n');
    assert.equal(read('tsvz/p1/cpu.max'), 'max 100000\n');
    assert.equal(read('tsvz/p1/pids.max'), 'max\n');
    assert.equal(fs.existsSync(path.join(root, 'tsvz/p1/memory.swap.max')), false);
  });

  it('refuses a limit whose controller the kernel does not offer', async () => {
    layV2('p1');
    fs.rmSync(path.join(root, 'tsvz/p1/pids.max'));
    await assert.rejects(async () => new ContainerCgroups('p1', { mountRoot: root }).create({ pids: 16 }), /the pids cgroup controller is not available/);
  });
});

describe('ContainerCgroups.usage and pids', () => {
  it('v1: reads memory, oom kills, pids and cpuacct', async () => {
    layV1Roots();
    lay('memory/tsvz/p1', {
      'memory.usage_in_bytes': '258048\n',
      'memory.limit_in_bytes': '67108864\n',
      'memory.max_usage_in_bytes': '67108864\n',
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    });
    lay('pids/tsvz/p1', { 'pids.current': '3\n', 'pids.max': '16\n', 'cgroup.procs': '10\n20\n30\n' });
    lay('cpuacct/tsvz/p1', { 'cpuacct.usage': '123456789\n' });
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.deepEqual(cg.usage(), {
      memoryBytes: 258048,
      memoryLimitBytes: 67108864,
      memoryPeakBytes: 67108864,
      oomKills: 2,
      pids: 3,
      pidsLimit: 16,
      cpuUsageNs: 123456789,
    });
    assert.deepEqual(cg.pids(), [10, 20, 30]);
  });

  it('v1: unlimited limits read as absent; pids() falls back to the memory hierarchy', async () => {
    layV1Roots(['memory']);
    lay('memory/tsvz/p1', { 'memory.limit_in_bytes': '9223372036854771712\n', 'cgroup.procs': '42\n' });
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.deepEqual(cg.usage(), {});
    assert.deepEqual(cg.pids(), [42]);
  });

  it('hybrid: CPU time from the unified cgroup when cpuacct is not mounted', async () => {
    layV1Roots(['memory']);
    lay('unified', { 'cgroup.controllers': '', 'cgroup.procs': '' });
    lay('unified/tsvz/p1', { 'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n' });
    assert.deepEqual(new ContainerCgroups('p1', { mountRoot: root }).usage(), { cpuUsageNs: 1500000 });
  });

  it('v2: reads memory.current/peak/events, pids and cpu.stat', async () => {
    layV2('p1');
    lay('tsvz/p1', {
      'memory.current': '4096\n',
      'memory.max': '67108864\n',
      'memory.peak': '8192\n',
      'memory.events': 'low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
      'pids.current': '2\n',
      'pids.max': 'max\n',
      'cpu.stat': 'usage_usec 250\nuser_usec 200\nsystem_usec 50\n',
      'cgroup.procs': '7\n8\n',
    });
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    assert.deepEqual(cg.usage(), { memoryBytes: 4096, memoryLimitBytes: 67108864, memoryPeakBytes: 8192, oomKills: 1, pids: 2, cpuUsageNs: 250000 });
    assert.deepEqual(cg.pids(), [7, 8]);
  });

  it('never throws for a cgroup that does not exist', async () => {
    layV1Roots();
    const cg = new ContainerCgroups('gone', { mountRoot: root });
    assert.deepEqual(cg.usage(), {});
    assert.deepEqual(cg.pids(), []);
  });
});

describe('ContainerCgroups.killAll and remove', () => {
  it('killAll thaws both freezers and uses cgroup.kill, then returns once empty', async () => {
    layV1Roots();
    lay('unified', { 'cgroup.controllers': '', 'cgroup.procs': '' });
    layV1Leaf('p1');
    fs.writeFileSync(path.join(root, 'freezer/tsvz/p1/freezer.state'), 'FROZEN\n');
    lay('unified/tsvz/p1', { 'cgroup.procs': '', 'cgroup.freeze': '1\n', 'cgroup.kill': '' });
    await new ContainerCgroups('p1', { mountRoot: root }).killAll();
    assert.equal(read('freezer/tsvz/p1/freezer.state'), 'THAWED\n');
    assert.equal(read('unified/tsvz/p1/cgroup.freeze'), '0\n');
    assert.equal(read('unified/tsvz/p1/cgroup.kill'), '1\n');
  });

  it('remove deletes the leaves and the tsvz parents once unused; twice is fine', async () => {
    layV1Roots(['memory', 'pids']);
    lay('unified', { 'cgroup.controllers': '', 'cgroup.procs': '' });
    for (const dir of ['memory/tsvz/p1', 'pids/tsvz/p1', 'unified/tsvz/p1', 'pids/tsvz/other']) lay(dir);
    const cg = new ContainerCgroups('p1', { mountRoot: root });
    await cg.remove();
    assert.equal(cg.exists(), false);
    assert.equal(fs.existsSync(path.join(root, 'memory/tsvz')), false);
    assert.equal(fs.existsSync(path.join(root, 'unified/tsvz')), false);
    assert.ok(fs.existsSync(path.join(root, 'pids/tsvz/other')), 'a sibling container keeps the parent');
    await cg.remove();
  });
});
