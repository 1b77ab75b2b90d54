import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { cgroupYard, yardLinks } from '../../checkpoint/cgroup-yard';
import type { MountInfo } from '../../lib/mountinfo';

const cg = (mountPoint: string, ...superOptions: string[]): MountInfo => ({ root: '/', mountPoint, fsType: 'cgroup', superOptions: ['rw', ...superOptions] });
const cg2 = (mountPoint: string): MountInfo => ({ root: '/', mountPoint, fsType: 'cgroup2', superOptions: ['rw'] });

describe('the cgroup yard CRIU is given', () => {
  it("names a hybrid host's hierarchies as CRIU does (co-mounted, name=, cgroup2) and links their mounts", () => {
    const links = yardLinks(
      '12:pids:/\n4:cpu,cpuacct:/x\n1:name=systemd:/\n0::/\n',
      [cg2('/sys/fs/cgroup/unified'), cg('/sys/fs/cgroup/cpu,cpuacct', 'cpu', 'cpuacct'), cg('/sys/fs/cgroup/pids', 'pids'), cg('/sys/fs/cgroup/systemd', 'xattr', 'name=systemd')],
    );
    assert.deepEqual(links, [
      ['cpu,cpuacct', '/sys/fs/cgroup/cpu,cpuacct'],
      ['pids', '/sys/fs/cgroup/pids'],
      ['systemd', '/sys/fs/cgroup/systemd'],
      ['unified', '/sys/fs/cgroup/unified'],
    ]);
  });

  it('links a cgroup2-only host as "unified"', () => {
    assert.deepEqual(yardLinks('0::/user.slice\n', [cg2('/sys/fs/cgroup')]), [['unified', '/sys/fs/cgroup']]);
  });

  it('gives a named hierarchy with controllers both the names dump and restore use', () => {
    assert.deepEqual(yardLinks('3:cpu,name=x:/\n', [cg('/cg/x', 'cpu', 'name=x')]), [['cpu,name=x', '/cg/x'], ['cpu,x', '/cg/x']]);
  });

  it('has none when a hierarchy is only mounted in part (a container\'s view) or not at all', () => {
    assert.equal(yardLinks('5:memory:/\n', [{ ...cg('/sys/fs/cgroup/memory', 'memory'), root: '/docker/abc' }]), undefined);
    assert.equal(yardLinks('5:memory:/\n0::/\n', [cg('/sys/fs/cgroup/memory', 'memory')]), undefined);
  });

  describe('on this host', () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-yard-'));
    after(() => fs.rmSync(cache, { recursive: true, force: true }));

    it('is a directory of links to every hierarchy this process is in, made once', () => {
      const yard = cgroupYard(cache);
      assert.ok(yard, 'this host mounts every hierarchy whole');
      const names = fs.readdirSync(yard).sort();
      const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
      assert.ok(names.length >= lines.length, `${names.join(' ')} for ${lines.length} hierarchies`);
      for (const name of names) {
        assert.ok(fs.existsSync(path.join(yard, name, 'cgroup.procs')), `${name} links to a cgroup hierarchy`);
      }
      assert.equal(cgroupYard(cache), yard, 'the same yard the second time');
      assert.deepEqual(fs.readdirSync(cache), [path.basename(yard)], 'no temporary left');
    });
  });
});
