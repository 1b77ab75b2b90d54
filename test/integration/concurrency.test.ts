import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { Root } from '../../lib/root';
import { Container } from '../../runtime/container';
import { checkpointContainer } from '../../ops/checkpoint';
import { createContainer } from '../../ops/create';
import { execInContainer } from '../../ops/exec';
import { freezeContainer, unfreezeContainer } from '../../ops/freeze';
import { containerInfo, listContainers } from '../../ops/info';
import { createSnapshot } from '../../ops/snapshot';
import { startContainer } from '../../ops/start';
import { loadCriuMessages } from '../../checkpoint/criu/proto';
import { leftoverCgroups, leftoverMonitors, rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped concurrency tests: ${skip}`);

/** The longest the event loop may be held by one step while others wait. */
const MAX_STALL_MS = 50;
/** The sampling timer's period, which every recorded delay includes. */
const RESOLUTION_MS = 2;

/**
 * What a daemon does: many operations on several containers at once, from
 * one process. They must not wait on each other's blocking calls (the event
 * loop stays free) nor deadlock on their own locks (they queue).
 */
describe('one process, many operations on five containers at once', { skip }, () => {
  const t = new TestRoot();
  const root = new Root(t.dir);
  const names = ['c1', 'c2', 'c3', 'c4', 'c5'];

  before(async () => {
    // What a daemon loads at start, so its first dump does not compile it.
    loadCriuMessages();
    await Promise.all(names.map((n) => createContainer(root, n, { template: 'busybox', limits: { memoryBytes: 64 << 20 } })));
  });
  after(() => t.cleanup());

  test(`every operation succeeds and the event loop never stalls ${MAX_STALL_MS} ms`, async (tc) => {
    const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    delay.enable();
    const done: string[] = [];
    const step = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
      const r = await op();
      done.push(what);
      return r;
    };
    const lifeOf = async (name: string) => {
      const c = Container.open(root, name);
      await step(`start ${name}`, () => startContainer(c));
      // Two callers on one container at the same moment queue on its lock in this process.
      const [exit] = await Promise.all([
        step(`exec ${name}`, () => execInContainer(c, ['sh', '-c', 'echo hi > /tmp/hi'], { stdio: 'ignore' })),
        step(`info ${name}`, async () => containerInfo(c)),
      ]);
      assert.equal(exit, 0);
      await step(`freeze ${name}`, () => freezeContainer(c));
      await step(`unfreeze ${name}`, () => unfreezeContainer(c));
      await Promise.all([
        step(`checkpoint ${name}`, () => checkpointContainer(c, { leaveRunning: true })),
        step(`snapshot ${name}`, () => createSnapshot(c, 'before')),
      ]);
      assert.equal(containerInfo(c).state, 'running');
    };
    let listing = true;
    const lister = (async () => {
      while (listing) {
        await step('list', async () => listContainers(root));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await Promise.all(names.map(lifeOf));
    } finally {
      listing = false;
      await lister;
      delay.disable();
    }
    const ms = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
    tc.diagnostic(`${done.length} operations; event loop stalls p50 ${ms(delay.percentile(50)).toFixed(1)} ms, p99 ${ms(delay.percentile(99)).toFixed(1)} ms, max ${ms(delay.max).toFixed(1)} ms`);
    assert.ok(done.filter((d) => d !== 'list').length >= 20, `ran ${done.length} operations`);
    assert.ok(ms(delay.max) < MAX_STALL_MS, `the event loop stalled for ${ms(delay.max).toFixed(1)} ms`);
    for (const n of names) assert.equal(JSON.parse(t.ok(['info', n, '--json'])).state, 'running');
  });

  test('afterwards every container destroys cleanly', () => {
    for (const n of names) t.ok(['destroy', '--force', n]);
    assert.deepEqual(leftoverCgroups(t.dir), []);
    assert.deepEqual(leftoverMonitors(t.dir), []);
  });
});
