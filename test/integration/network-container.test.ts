import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { after, describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped container network tests: ${skip}`);

describe('--net bridge', { skip }, () => {
  const t = new TestRoot();
  const bridge = `tsvz-tb${crypto.randomBytes(2).toString('hex')}`;
  after(() => {
    t.cleanup();
    spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  });

  test('two containers on one bridge reach each other; restart keeps the address', () => {
    t.ok(['create', 'n1', '--net', 'bridge', '--ip', '198.18.77.10/24', '--bridge', bridge]);
    t.ok(['create', 'n2', '--net', 'bridge', '--ip', '198.18.77.11/24', '--bridge', bridge]);
    t.ok(['start', 'n1']);
    t.ok(['start', 'n2']);
    assert.equal(t.info('n1').ip, '198.18.77.10');
    assert.match(t.ok(['exec', 'n1', '--', 'ip', '-o', '-4', 'addr', 'show', 'eth0']), /198\.18\.77\.10\/24/);
    assert.equal(t.run(['exec', 'n1', '--', 'ping', '-c', '1', '-W', '2', '198.18.77.11']).status, 0);

    t.ok(['stop', 'n1', '--timeout', '3']);
    t.ok(['start', 'n1']);
    assert.match(t.ok(['exec', 'n1', '--', 'ip', '-o', '-4', 'addr', 'show', 'eth0']), /198\.18\.77\.10\/24/);
    assert.match(t.ok(['exec', 'n1', '--', 'ip', 'route']), /default via 198\.18\.77\.1/);
    assert.equal(t.run(['exec', 'n2', '--', 'ping', '-c', '1', '-W', '2', '198.18.77.10']).status, 0);
  });

  test('stop and destroy remove the host veth', () => {
    const before = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).length;
    t.ok(['destroy', '--force', 'n2']);
    const afterCount = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).length;
    assert.equal(afterCount, before - 1);
  });
});
