import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { eventually, rootSkipReason, sleep, TestRoot } from '../helpers/cli';
import { installMemhog, readHex } from '../helpers/memhog';

const skip = rootSkipReason();
if (skip) console.log(`# skipped stateful snapshot tests: ${skip}`);

describe('stateful snapshots: files and memory at one instant (real CRIU)', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  const pools: [string, string[]][] = [
    ['dir (default pool)', []],
    ['btrfs', ['--driver', 'btrfs', '--size', '256M']],
  ];
  for (const [label, poolArgs] of pools) {
    test(`${label}: rollback brings back the files and the running memory of the snapshot`, async () => {
      const name = poolArgs.length ? 'sfb' : 'sfd';
      if (poolArgs.length) t.ok(['pool', 'create', `${name}pool`, ...poolArgs]);
      t.ok(['create', name, '--init', '/usr/bin/memhog 32', ...(poolArgs.length ? ['--pool', `${name}pool`] : [])]);
      const rootfs = fs.realpathSync(path.join(t.dir, 'containers', name, 'rootfs'));
      installMemhog(rootfs);
      t.ok(['start', name]);
      const count = () => parseInt(readHex(path.join(rootfs, 'memhog.count')) ?? '-1', 16);
      assert.ok(await eventually(() => count() >= 10, 20_000));
      const sum = readHex(path.join(rootfs, 'memhog.sum'));
      fs.writeFileSync(path.join(rootfs, 'note'), 'at the snapshot');

      t.ok(['snapshot', name, 's1', '--stateful']);
      const atSnapshot = count();
      assert.equal(t.info(name).state, 'running', 'a stateful snapshot leaves the container running');
      assert.match(t.ok(['snapshot', 'list', name]), /s1 .* yes /);

      fs.writeFileSync(path.join(rootfs, 'note'), 'changed later');
      assert.ok(await eventually(() => count() > atSnapshot + 10, 20_000), 'time passes in the container');
      assert.match(t.run(['snapshot', 'rollback', name, 's1']).stderr, /is running/);

      t.ok(['snapshot', 'rollback', name, 's1', '--force']);
      assert.equal(t.info(name).state, 'running', 'comes back running');
      const after = fs.realpathSync(path.join(t.dir, 'containers', name, 'rootfs'));
      assert.equal(fs.readFileSync(path.join(after, 'note'), 'utf8'), 'at the snapshot');
      const resumed = parseInt(readHex(path.join(after, 'memhog.count')) ?? '-1', 16);
      // Before the rollback it had gone past atSnapshot + 10: back near the snapshot's value means memory came back.
      assert.ok(resumed >= atSnapshot - 5 && resumed < atSnapshot + 10, `the counter resumes from the snapshot (~${atSnapshot}), saw ${resumed}`);
      fs.writeFileSync(path.join(after, 'memhog.ask'), '');
      assert.ok(await eventually(() => readHex(path.join(after, 'memhog.now')) !== undefined, 10_000));
      assert.equal(readHex(path.join(after, 'memhog.now')), sum, 'memory as it was');

      t.ok(['snapshot', 'rm', name, 's1']);
      assert.equal(fs.existsSync(path.join(t.dir, 'containers', name, 'snapshot-state', 's1')), false, 'its memory is removed with it');
      t.ok(['destroy', '--force', name]);
    });
  }

  test('a stateful snapshot of a stopped container is refused; of a frozen one it stays frozen', async () => {
    t.ok(['create', 'sfz', '--init', '/usr/bin/memhog 8']);
    installMemhog(path.join(t.dir, 'containers', 'sfz', 'rootfs'));
    assert.match(t.run(['snapshot', 'sfz', 'x', '--stateful']).stderr, /not running/);
    t.ok(['start', 'sfz']);
    await sleep(200);
    t.ok(['freeze', 'sfz']);
    t.ok(['snapshot', 'sfz', 'f1', '--stateful']);
    assert.equal(t.info('sfz').state, 'frozen');
    t.ok(['unfreeze', 'sfz']);
    assert.equal(t.info('sfz').state, 'running');
    t.ok(['destroy', '--force', 'sfz']);
  });

  test('a rollback of the files retires the checkpoints: none is restored over other files', async () => {
    t.ok(['create', 'sfr', '--init', '/usr/bin/memhog 8']);
    const rootfs = path.join(t.dir, 'containers', 'sfr', 'rootfs');
    installMemhog(rootfs);
    fs.writeFileSync(path.join(rootfs, 'note'), 'at s1');
    t.ok(['snapshot', 'sfr', 's1']);
    t.ok(['start', 'sfr']);
    await eventually(() => readHex(path.join(rootfs, 'memhog.sum')) !== undefined, 20_000);
    fs.writeFileSync(path.join(rootfs, 'note'), 'later');
    const id = t.ok(['checkpoint', 'sfr']).trim();
    assert.equal(t.info('sfr').checkpoint, id, 'stopped at the checkpoint');

    t.ok(['snapshot', 'rollback', 'sfr', 's1']);
    assert.equal(fs.readFileSync(path.join(rootfs, 'note'), 'utf8'), 'at s1');
    assert.equal(t.info('sfr').checkpoint, undefined, 'no longer waiting on a checkpoint');
    assert.match(t.ok(['checkpoint', 'list', 'sfr']), /no \(files rolled back to s1\)/);
    const r = t.run(['restore', 'sfr', id]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`checkpoint ${id} of sfr predates the rollback of its files to snapshot s1`));
    assert.equal(t.run(['restore', 'sfr']).status, 1, 'nor as the newest');
    assert.equal(t.info('sfr').state, 'stopped', 'nothing changed');
    t.ok(['checkpoint', 'rm', 'sfr', id]);
    t.ok(['start', 'sfr']);
    assert.equal(t.info('sfr').state, 'running', 'starts afresh on the rolled-back files');
    t.ok(['destroy', '--force', 'sfr']);
  });
});
