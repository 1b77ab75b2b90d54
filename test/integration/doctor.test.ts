import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();

describe('tsvz doctor', { skip }, () => {
  test('reports cgroup mode, freezer, CRIU >= 4.1 and storage tools', () => {
    const t = new TestRoot();
    try {
      const checks: { name: string; ok: boolean; detail: string }[] = JSON.parse(t.ok(['doctor', '--json']));
      const byName = new Map(checks.map((c) => [c.name, c]));
      for (const name of ['cgroups', 'freezer', 'criu', 'criu check', 'storage dir', 'storage btrfs', 'storage zfs', 'storage lvm', 'soft-dirty (pre-copy)', 'userfaultfd (post-copy)']) {
        assert.ok(byName.has(name), `doctor reports ${name}`);
      }
      // set-up (scripts/setup-host) guarantees these on every machine of this kind
      assert.equal(byName.get('criu')!.ok, true, byName.get('criu')!.detail);
      assert.match(byName.get('criu')!.detail, /^4\.\d+/);
      assert.equal(byName.get('criu check')!.ok, true);
      assert.equal(byName.get('tsvz-monitor')!.ok, true);
      assert.equal(byName.get('storage btrfs')!.ok, true, byName.get('storage btrfs')!.detail);
      assert.equal(byName.get('storage zfs')!.ok, true, byName.get('storage zfs')!.detail);
      assert.match(t.ok(['doctor']), /criu/);
    } finally {
      t.cleanup();
    }
  });
});
