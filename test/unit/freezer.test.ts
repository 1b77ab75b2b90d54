import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { freeze, freezerFor, isFrozen, thaw, thawAll, withFrozen } from '../../runtime/cgroups/freezer';
import { ContainerCgroups } from '../../runtime/cgroups';
import { NotSupportedError, TsvzError } from '../../lib/errors';

/*
 * A fake hybrid cgroup tree: the v1 freezer hierarchy and the unified one.
 * The fake "kernel" never changes a file by itself: freezer.state reads back
 * what we wrote (as if freezing were instant), cgroup.events never changes
 * unless the test (or a background process standing in for the kernel) does.
 */
const LEAF = 'abcd1234-f1';
let root: string;
let v1: string;
let v2: string;

beforeEach(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-freezer-'));
  v1 = path.join(root, 'freezer', 'tsvz', LEAF);
  v2 = path.join(root, 'unified', 'tsvz', LEAF);
  fs.mkdirSync(v1, { recursive: true });
  fs.mkdirSync(v2, { recursive: true });
  fs.writeFileSync(path.join(root, 'freezer', 'cgroup.procs'), '');
  fs.writeFileSync(path.join(root, 'unified', 'cgroup.controllers'), '');
});
afterEach(async () => {
  fs.rmSync(root, { recursive: true, force: true });
});

function lay(files: { state?: string; freeze?: string; events?: string }): ContainerCgroups {
  if (files.state !== undefined) fs.writeFileSync(path.join(v1, 'freezer.state'), files.state);
  if (files.freeze !== undefined) fs.writeFileSync(path.join(v2, 'cgroup.freeze'), files.freeze);
  if (files.events !== undefined) fs.writeFileSync(path.join(v2, 'cgroup.events'), files.events);
  return new ContainerCgroups(LEAF, { mountRoot: root, mode: 'hybrid' });
}

const read = (dir: string, file: string): string => fs.readFileSync(path.join(dir, file), 'utf8');
const BOTH = { state: 'THAWED\n', freeze: '0\n', events: 'populated 1\nfrozen 0\n' };

describe('freezerFor', () => {
  it('prefers v2 when the container has cgroup.freeze, with v1 as the sibling to thaw', async () => {
    assert.deepEqual(freezerFor(lay(BOTH)), { kind: 'v2', path: v2, sibling: v1 });
  });

  it('falls back to v1; prefer forces either', async () => {
    assert.deepEqual(freezerFor(lay({ state: 'THAWED\n' })), { kind: 'v1', path: v1 });
    assert.deepEqual(freezerFor(lay(BOTH), 'v1'), { kind: 'v1', path: v1, sibling: v2 });
  });

  it('throws NotSupportedError when there is no freezer, or not the preferred one', async () => {
    assert.throws(() => freezerFor(lay({})), NotSupportedError);
    assert.throws(() => freezerFor(lay({ state: 'THAWED\n' }), 'v2'), (err: NotSupportedError) => {
      assert.match(err.message, /no cgroup v2 freezer \(cgroup\.freeze\)/);
      return true;
    });
  });
});

describe('freeze and thaw', () => {
  it('v1: writes FROZEN and returns once freezer.state reads FROZEN', async () => {
    const f = freezerFor(lay(BOTH), 'v1');
    const ms = await freeze(f);
    assert.ok(ms >= 0 && ms < 1000, `took ${ms} ms`);
    assert.equal(read(v1, 'freezer.state'), 'FROZEN\n');
    assert.equal(read(v2, 'cgroup.freeze'), '0\n', 'the other freezer is left alone');
  });

  it('v2: writes 1 and waits until cgroup.events says "frozen 1"', async () => {
    const cg = lay(BOTH);
    // The "kernel" finishes freezing 100 ms later.
    const kernel = spawn('sh', ['-c', `sleep 0.1; printf 'populated 1\\nfrozen 1\\n' > '${v2}/cgroup.events'`]);
    const exited = new Promise((r) => kernel.on('exit', r));
    const ms = await freeze(freezerFor(cg, 'v2'), 5000);
    await exited;
    assert.ok(ms >= 90, `returned after ${ms} ms, before the kernel said frozen`);
    assert.equal(read(v2, 'cgroup.freeze'), '1\n');
    assert.equal(isFrozen(cg), true);
  });

  it('on timeout: thaws both freezers and throws ETIMEDOUT', async () => {
    const f = freezerFor(lay(BOTH), 'v2'); // events never says "frozen 1"
    const t0 = Date.now();
    await assert.rejects(async () => freeze(f, 50), (err: TsvzError) => {
      assert.equal(err.code, 'ETIMEDOUT');
      assert.match(err.message, /was not frozen after 50 ms; thawed it again/);
      return true;
    });
    assert.ok(Date.now() - t0 < 1000, 'gives up at the timeout');
    assert.equal(read(v2, 'cgroup.freeze'), '0\n');
    assert.equal(read(v1, 'freezer.state'), 'THAWED\n');
  });

  it('thaw thaws both freezers, whichever froze the container', async () => {
    const cg = lay({ state: 'FROZEN\n', freeze: '1\n', events: 'frozen 0\n' });
    await thaw(freezerFor(cg, 'v1'));
    assert.equal(read(v1, 'freezer.state'), 'THAWED\n');
    assert.equal(read(v2, 'cgroup.freeze'), '0\n');
    assert.equal(isFrozen(cg), false);
  });

  it('thawAll works with one freezer, or none', async () => {
    await thawAll(lay({ freeze: '1\n' }));
    assert.equal(read(v2, 'cgroup.freeze'), '0\n');
    await assert.doesNotReject(async () => thawAll(new ContainerCgroups('no-such-leaf', { mountRoot: root, mode: 'hybrid' })));
  });
});

describe('isFrozen', () => {
  const cases: [string, Parameters<typeof lay>[0], boolean][] = [
    ['all thawed', BOTH, false],
    ['v1 FROZEN', { ...BOTH, state: 'FROZEN\n' }, true],
    ['v1 FREEZING (in progress or stuck)', { ...BOTH, state: 'FREEZING\n' }, true],
    ['v2 frozen', { ...BOTH, freeze: '1\n', events: 'populated 1\nfrozen 1\n' }, true],
    ['v2 asked to freeze, not done yet', { ...BOTH, freeze: '1\n' }, true],
    ['no freezer files at all (stopped container)', {}, false],
  ];
  for (const [name, files, expected] of cases) {
    it(name, () => assert.equal(isFrozen(lay(files)), expected));
  }
});

describe('withFrozen', () => {
  it('runs the body frozen and thaws afterwards', async () => {
    const cg = lay(BOTH);
    const seen = await withFrozen(freezerFor(cg, 'v1'), async () => isFrozen(cg));
    assert.equal(seen, true);
    assert.equal(isFrozen(cg), false);
  });

  it('thaws when the body throws, and rethrows its error', async () => {
    const cg = lay(BOTH);
    await assert.rejects(withFrozen(freezerFor(cg, 'v1'), async () => { throw new Error('dump failed'); }), /^Error: dump failed$/);
    assert.equal(read(v1, 'freezer.state'), 'THAWED\n');
    assert.equal(isFrozen(cg), false);
  });

  it('does not run the body when freezing times out', async () => {
    let ran = false;
    await assert.rejects(withFrozen(freezerFor(lay(BOTH), 'v2'), async () => { ran = true; }, 20), { code: 'ETIMEDOUT' });
    assert.equal(ran, false);
  });
});
