import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { eventually, rootSkipReason } from '../helpers/cli';
import { installMemhog, readHex } from '../helpers/memhog';
import { TestHost, TestNetwork, trustedPair } from '../helpers/netns';

/**
 * Iterative pre-copy (docs/migration.md) needs the kernel's soft-dirty
 * bits, which only the VM lane's kernel has: two hosts in network
 * namespaces inside the guest, each with its own root and daemon, as in
 * test/e2e/migrate.test.ts.
 */
const inGuest = process.env.TSVZ_VM_LANE_GUEST === '1';
const skip = !inGuest
  ? 'runs inside the VM lane: npm run test:vm'
  : rootSkipReason() ?? TestNetwork.skipReason() ?? (spawnSync('cc', ['--version']).status !== 0 ? 'no C compiler for the memhog fixture' : undefined);
if (skip) console.log(`# skipped pre-copy migration tests: ${skip}`);

interface Round { round: number; pagesWritten: number; bytes: number }

describe('pre-copy migration between two hosts', { skip }, () => {
  const net = new TestNetwork();
  let a: TestHost;
  let b: TestHost;
  const rootfs = (h: TestHost, name: string) => path.join(h.dir, 'containers', name, 'rootfs');
  const memCount = (h: TestHost, name: string) => parseInt(readHex(path.join(rootfs(h, name), 'memhog.count')) ?? '-1', 16);
  const state = (h: TestHost, name: string) => JSON.parse(h.ok(['info', name, '--json'])).state as string;
  const journal = (h: TestHost) => JSON.parse(h.ok(['migrate', 'list', '--json'])) as { name: string; role: string; phase: string }[];

  /** Nothing of `name` on `h`: no container, no staging of its pages, no rounds' records. */
  function clean(h: TestHost, name: string): void {
    assert.ok(!(JSON.parse(h.ok(['list', '--json'])) as { name: string }[]).some((c) => c.name === name), `${h.name} has no ${name}`);
    assert.deepEqual(fs.readdirSync(path.join(h.dir, 'containers')).filter((n) => n.includes(name)), [], `${h.name} holds nothing of ${name}`);
  }

  /** memhog's checksum of its memory, asked of the copy on `h`. */
  async function memorySum(h: TestHost, name: string): Promise<string | undefined> {
    const dir = rootfs(h, name);
    fs.rmSync(path.join(dir, 'memhog.now'), { force: true });
    fs.writeFileSync(path.join(dir, 'memhog.ask'), '');
    assert.ok(await eventually(() => readHex(path.join(dir, 'memhog.now')) !== undefined, 60_000), `memhog on ${h.name} answers`);
    return readHex(path.join(dir, 'memhog.now'));
  }

  /** Container `name` on a running memhog over `mib` MiB, once it has counted to `counts`. */
  async function startMemhog(name: string, mib: number, counts: number): Promise<void> {
    a.ok(['create', name, '--init', `/usr/bin/memhog ${mib}`]);
    installMemhog(rootfs(a, name));
    a.ok(['start', name]);
    assert.ok(await eventually(() => memCount(a, name) >= counts, 60_000), 'memhog is counting');
  }

  before(async () => {
    [a, b] = await trustedPair(net);
  });
  after(() => net.remove());

  test('auto picks pre-copy here: 128 MiB go in rounds while it runs, the freeze sends only what the last round left; bit-identical there and back', async () => {
    await startMemhog('q1', 128, 3);
    const sum = readHex(path.join(rootfs(a, 'q1'), 'memhog.sum'));
    assert.ok(sum, 'memhog wrote the checksum of its memory');
    let here = a;
    for (const [from, to, mode] of [[a, b, 'auto'], [b, a, 'pre']] as const) {
      const before = memCount(from, 'q1');
      const r = JSON.parse(from.ok(['migrate', 'q1', '--to', to.name, '--mode', mode, '--json'], { timeoutMs: 600_000 }));
      console.log(`# ${from.name} -> ${to.name}: frozen ${r.frozenMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms, rounds ${JSON.stringify(r.preCopyRounds)}`);
      assert.equal(r.mode, 'pre-copy');
      const rounds = r.preCopyRounds as Round[];
      assert.ok(rounds.length >= 1 && rounds.length <= 8, `1 to 8 rounds: ${rounds.length}`);
      assert.ok(rounds[0].bytes > 128 * 1024 ** 2 && rounds[0].pagesWritten >= 32768, 'the first round carries the whole memory');
      // memhog's memory is idle once filled: the round after the first writes almost nothing, and the rounds stop there.
      assert.ok(rounds.length >= 2 && rounds.at(-1)!.pagesWritten < 64, `the rounds stopped once one wrote under 64 pages: ${JSON.stringify(rounds)}`);
      const preBytes = rounds.reduce((n, x) => n + x.bytes, 0);
      assert.ok(r.imagesBytes - preBytes < 16 * 1024 ** 2, `the freeze sent only what the rounds left (${r.imagesBytes - preBytes} bytes)`);
      assert.equal(state(to, 'q1'), 'running');
      clean(from, 'q1');
      assert.ok(await eventually(() => memCount(to, 'q1') > before, 30_000), 'it counts on from where it was');
      assert.equal(await memorySum(to, 'q1'), sum, `memory checksum on ${to.name}`);
      assert.equal(journal(to).find((j) => j.name === 'q1' && j.role === 'target')?.phase, 'committed');
      // Its checkpoint there keeps memory in the rounds' images: listed, but not exported (an archive carries no parent images).
      const [cp] = JSON.parse(to.ok(['checkpoint', 'list', 'q1', '--json'])) as { id: string }[];
      const exported = to.run(['checkpoint', 'export', 'q1', cp.id, path.join(to.dir, 'q1.tar')]);
      assert.equal(exported.status, 1, exported.stderr);
      assert.match(exported.stderr, /^tsvz: checkpoint migrate-[0-9a-f]{12} of q1 keeps part of its memory in the images of earlier rounds \(a pre-copy migration's\) \(take a new checkpoint and export that\)$/m);
      assert.ok(!fs.existsSync(path.join(to.dir, 'q1.tar')), 'no half-written archive');
      here = to;
    }
    here.ok(['destroy', '--force', 'q1']);
  });

  test('migrate cancel during a pre-copy round: CRIU stops, it runs on here, neither host holds anything of the migration', async () => {
    await startMemhog('q3', 128, 2);
    const m = a.spawn(['migrate', 'q3', '--to', 'b', '--mode', 'pre']);
    let err = '';
    m.stderr!.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((resolve) => m.once('exit', (code) => resolve(code)));
    assert.ok(await eventually(() => err.includes('pre-copy round 1 (running)'), 120_000), err);
    assert.match(a.ok(['migrate', 'cancel', 'q3']), /^cancelled migration [0-9a-f]{12} of q3 to b: q3 runs on here$/m);
    assert.equal(await exited, 130, err);
    assert.match(err, /^tsvz: migration of q3 to b cancelled \(q3 runs on here\)$/m);
    assert.equal(state(a, 'q3'), 'running');
    const c = memCount(a, 'q3');
    assert.ok(await eventually(() => memCount(a, 'q3') > c, 30_000), 'and it counts');
    assert.ok(await eventually(() => journal(b).find((j) => j.name === 'q3')?.phase === 'aborted', 30_000), JSON.stringify(journal(b)));
    clean(b, 'q3');
    assert.deepEqual(fs.readdirSync(path.join(a.dir, 'containers', 'q3')).filter((n) => n.startsWith('migrate-')), [], 'the rounds left nothing on the source');
    assert.equal(spawnSync('pgrep', ['-f', 'criu (swrk|page-server)']).status, 1, 'no CRIU is left running');
    a.ok(['destroy', '--force', 'q3']);
  });

  test('a pre-copy round altered on its way is refused before CRIU restores anything: the source runs on, the target holds nothing', async () => {
    await startMemhog('q2', 16, 2);
    const r = a.run(['migrate', 'q2', '--to', 'b', '--mode', 'pre'], { env: { TSVZ_FAULT: 'migrate:tamper-pages' }, timeoutMs: 600_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^tsvz: .*round 1 of the memory of the checkpoint .* is not what the source sent \(its sha256 differs\)$/m);
    assert.equal(state(a, 'q2'), 'running', 'CRIU resumed the source');
    const c = memCount(a, 'q2');
    assert.ok(await eventually(() => memCount(a, 'q2') > c, 30_000), 'and it counts');
    assert.ok(await eventually(() => journal(b).find((j) => j.name === 'q2')?.phase === 'aborted', 30_000), JSON.stringify(journal(b)));
    clean(b, 'q2');
    assert.deepEqual(fs.readdirSync(path.join(a.dir, 'containers', 'q2')).filter((n) => n.startsWith('migrate-')), [], 'the rounds left nothing on the source');
    a.ok(['destroy', '--force', 'q2']);
  });
});
