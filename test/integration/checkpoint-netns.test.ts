import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped netns checkpoint tests: ${skip}`);

/** What a workload configured in its own (--net none) network namespace must find again after a restore. */
describe('a --net none container keeps its network settings across checkpoint and restore', { skip }, () => {
  const t = new TestRoot();
  const sh = (cmd: string) => t.ok(['exec', 'n1', '--', 'sh', '-c', cmd]);
  const settings = () => ({
    forwarding: sh('cat /proc/sys/net/ipv4/conf/all/forwarding').trim(),
    redirects: sh('cat /proc/sys/net/ipv4/conf/all/accept_redirects').trim(),
    addresses: sh('ip -o -4 addr show dev lo').includes('10.99.0.1/32'),
    route: sh('ip -4 route show').includes('10.98.0.0/24'),
  });

  before(() => {
    t.ok(['create', 'n1', '--net', 'none']);
    t.ok(['start', 'n1']);
    sh('echo 1 > /proc/sys/net/ipv4/conf/all/forwarding; echo 0 > /proc/sys/net/ipv4/conf/all/accept_redirects');
    sh('ip addr add 10.99.0.1/32 dev lo && ip route add 10.98.0.0/24 dev lo');
  });
  after(() => t.cleanup());

  test('sysctls, an address on lo and a route come back', () => {
    const before = settings();
    assert.deepEqual(before, { forwarding: '1', redirects: '0', addresses: true, route: true });
    t.ok(['checkpoint', 'n1']);
    t.ok(['restore', 'n1']);
    assert.deepEqual(settings(), before);
    assert.match(sh('ip -o link show lo'), /[<,]UP[,>]/, 'lo is up');
  });
});
