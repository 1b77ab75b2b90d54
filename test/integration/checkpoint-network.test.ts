import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { eventually, rootSkipReason, sleep, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped checkpoint network tests: ${skip}`);

describe('checkpoint of networked containers (real CRIU)', { skip }, () => {
  const t = new TestRoot();
  const bridge = `tsvz-tc${crypto.randomBytes(2).toString('hex')}`;
  after(() => {
    t.cleanup();
    spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  });

  const received = () => {
    try { return fs.readFileSync(path.join(t.dir, 'containers', 'srv', 'rootfs', 'received'), 'utf8').trim().split('\n').filter(Boolean).map(Number); } catch { return []; }
  };

  test('a TCP connection between two containers survives --tcp-established, with no gap', async () => {
    t.ok(['create', 'srv', '--net', 'bridge', '--ip', '198.18.79.11/24', '--bridge', bridge, '--init', 'sh -c "nc -l -p 5000 > /received"']);
    t.ok(['create', 'cli', '--net', 'bridge', '--ip', '198.18.79.10/24', '--bridge', bridge,
      '--init', 'sh -c "i=0; while :; do i=$((i+1)); echo $i; usleep 50000; done | nc 198.18.79.11 5000"']);
    t.ok(['start', 'srv']);
    assert.ok(await eventually(() => /:5000 .*LISTEN/.test(t.run(['exec', 'srv', '--', 'netstat', '-ltn']).stdout), 10_000), 'the server listens');
    t.ok(['start', 'cli']);
    assert.ok(await eventually(() => received().length >= 10, 10_000), 'data flows before the checkpoint');

    t.ok(['checkpoint', 'cli', '--tcp-established']);
    const atDump = received().length;
    await sleep(500);
    assert.equal(received().length, atDump, 'nothing is sent while the client is checkpointed');

    t.ok(['restore', 'cli']);
    assert.ok(await eventually(() => received().length >= atDump + 10, 10_000), 'data flows again on the same connection');
    const lines = received();
    lines.forEach((n, i) => assert.equal(n, i + 1, `contiguous stream (line ${i + 1})`));
    assert.equal(t.info('srv').state, 'running', 'the server never saw the connection drop');
  });

  test('restore keeps the address and MAC, and the neighbour reaches it', () => {
    const mac = t.ok(['exec', 'cli', '--', 'cat', '/sys/class/net/eth0/address']).trim();
    t.ok(['checkpoint', 'cli', '--tcp-established']);
    t.ok(['restore', 'cli']);
    assert.match(t.ok(['exec', 'cli', '--', 'ip', '-o', '-4', 'addr', 'show', 'eth0']), /198\.18\.79\.10\/24/);
    assert.equal(t.ok(['exec', 'cli', '--', 'cat', '/sys/class/net/eth0/address']).trim(), mac);
    assert.equal(t.run(['exec', 'srv', '--', 'ping', '-c', '1', '-W', '2', '198.18.79.10']).status, 0);
  });
});
