import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { findCommand } from '../../lib/process';

/**
 * Soft-dirty page tracking (what pre-copy migration's iterative dumps need):
 * this host's kernel lacks it, Debian's kernel in the VM lane has it.
 */

const inGuest = process.env.TSVZ_VM_LANE_GUEST === '1';

test('criu check --feature mem_dirty_track', { skip: inGuest ? undefined : 'runs inside the VM lane: npm run test:vm' }, () => {
  const criu = findCommand('criu');
  assert.ok(criu, 'criu not installed (scripts/setup-host builds it)');
  const r = spawnSync(criu, ['check', '--feature', 'mem_dirty_track'], { encoding: 'utf8', timeout: 60_000 });
  const said = `${r.stdout}${r.stderr}`.trim();
  console.log(`# ${criu} check --feature mem_dirty_track: exit ${r.status}: ${said || '(no output)'}`);
  assert.equal(r.status, 0, said);
});
