import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { rootSkipReason } from '../helpers/cli';
import { enrol, TestHost, TestNetwork } from '../helpers/netns';
import { getDriver } from '../../storage/registry';

/**
 * Scheduled backups of a container on an lvm pool (device-mapper: the VM
 * lane), shipped to another host's store, as test/e2e/backup.test.ts does
 * for dir, btrfs and zfs: two hosts in network namespaces inside the
 * guest, each with its own daemon. lvm sends the tar stream.
 */
const inGuest = process.env.TSVZ_VM_LANE_GUEST === '1';
const skip = !inGuest ? 'runs inside the VM lane: npm run test:vm' : rootSkipReason() ?? TestNetwork.skipReason();
if (skip) console.log(`# skipped lvm backup tests: ${skip}`);

interface Row { where: string; snapshot: string; format?: string; bytes?: number; notes: string[] }

describe('backups of an lvm pool shipped to another host', { skip }, () => {
  const net = new TestNetwork();
  // A volume group's name is the kernel's, not a root's: unique to this run.
  const pool = `tsvz-lv${net.id}`;
  let c: TestHost;
  let d: TestHost;
  const rows = (h: TestHost, ...args: string[]) => JSON.parse(h.ok(['backup', 'list', ...args, '--json'])) as Row[];

  before(async () => {
    assert.deepEqual(await getDriver('lvm').missing(), [], 'lvm is usable in the VM');
    c = net.host('c');
    d = net.host('d');
    c.ok(['pool', 'create', pool, '--driver', 'lvm', '--size', '512M']);
    await c.startDaemon();
    await d.startDaemon();
    enrol(c, d);
  });
  after(async () => {
    await c?.stopDaemon();
    await d?.stopDaemon();
    c?.run(['destroy', '--force', 'tsvz-l1']);
    d?.run(['destroy', '--force', 'tsvz-l1-r']);
    c?.run(['pool', 'rm', '--force', pool]);
    net.remove();
  });

  test('a schedule run snapshots the lvm volume and ships it to d as tar; retention on both sides; d restores the newest with its files', () => {
    c.ok(['create', 'tsvz-l1', '--pool', pool]);
    c.ok(['start', 'tsvz-l1']);
    const data = crypto.randomBytes(2 << 20);
    const rootfs = path.join(c.dir, 'containers', 'tsvz-l1', 'rootfs', 'root');
    fs.writeFileSync(path.join(rootfs, 'data'), data);
    c.ok(['exec', 'tsvz-l1', '--', '/bin/sh', '-c', 'echo first > /root/note']);
    c.ok(['schedule', 'add', 'tsvz-l1', 'nightly', '--cron', '0 3 1 1 *', '--keep', 'last=1', '--to', 'd', '--tz', 'UTC']);
    const shipped = (out: string) => {
      const m = /^(nightly-\d{8}-\d{6}-\d{3}) \((\d+) bytes shipped\)(, pruned \S+)?\n$/.exec(out);
      assert.ok(m, out);
      return { snapshot: m[1], bytes: Number(m[2]) };
    };
    const first = shipped(c.ok(['schedule', 'run', 'tsvz-l1', 'nightly']));
    assert.ok(first.bytes > data.length, `a full tar of the volume (${first.bytes} bytes)`);
    assert.deepEqual(rows(c, 'tsvz-l1', '--on', 'd').map((r) => [r.snapshot, r.format]), [[first.snapshot, 'tar']]);

    c.ok(['exec', 'tsvz-l1', '--', '/bin/sh', '-c', 'echo second > /root/note']);
    const second = shipped(c.ok(['schedule', 'run', 'tsvz-l1', 'nightly']));
    const here = rows(c, 'tsvz-l1').filter((r) => r.where === 'local').map((r) => r.snapshot);
    const there = rows(c, 'tsvz-l1', '--on', 'd').map((r) => r.snapshot);
    assert.deepEqual(here, [second.snapshot], 'keep-last=1 here: the lvm snapshot of the first run is gone');
    assert.deepEqual(there, [second.snapshot], 'and there');

    d.ok(['backup', 'restore', 'tsvz-l1', second.snapshot, '--as', 'tsvz-l1-r']);
    d.ok(['start', 'tsvz-l1-r']);
    assert.equal(d.ok(['exec', 'tsvz-l1-r', '--', 'cat', '/root/note']).trim(), 'second');
    assert.ok(fs.readFileSync(path.join(d.dir, 'containers', 'tsvz-l1-r', 'rootfs', 'root', 'data')).equals(data), 'the data came back bit for bit');
    d.ok(['destroy', '--force', 'tsvz-l1-r']);
    // And fetched back from d's store onto c, into c's lvm pool's sibling: its default pool.
    c.ok(['backup', 'restore', 'tsvz-l1', second.snapshot, '--from', 'd', '--as', 'tsvz-l1-back']);
    assert.ok(fs.readFileSync(path.join(c.dir, 'containers', 'tsvz-l1-back', 'rootfs', 'root', 'data')).equals(data));
    c.ok(['destroy', '--force', 'tsvz-l1-back']);
  });
});
