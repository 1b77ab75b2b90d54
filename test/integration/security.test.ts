import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Root } from '../../lib/root';
import { boundingMask } from '../../runtime/capabilities';
import { eventually, REPO, rootSkipReason, TestRoot } from '../helpers/cli';
import { installFixture } from '../helpers/memhog';

const skip = rootSkipReason();
if (skip) console.log(`# skipped escape tests: ${skip}`);

/**
 * Escape attempts from inside real containers (test/fixtures/escape.c), each
 * of which must fail: on the default container (a user namespace) all of
 * them, on a --privileged one those that apply to a container whose root is
 * the host's. Every attempt is harmless if it works (it reads, writes back
 * what it read, or opens without writing).
 */
describe('escape attempts from inside a container (real kernel)', { skip }, () => {
  const t = new TestRoot();
  const kinds = [
    { name: 'unpriv', privileged: false },
    { name: 'priv', privileged: true },
  ];
  const hostRoot = fs.statSync('/');
  const major = Math.floor(hostRoot.dev / 256);
  const minor = hostRoot.dev % 256;

  before(() => {
    for (const k of kinds) {
      t.ok(['create', k.name, ...(k.privileged ? ['--privileged'] : [])]);
      installFixture(path.join(t.dir, 'containers', k.name, 'rootfs'), 'escape');
      t.ok(['start', k.name]);
    }
  });
  after(() => t.cleanup());

  /** The fixture's verdict lines for one attempt. */
  const attempt = (c: string, ...args: string[]) => t.ok(['exec', c, '--', 'escape', ...args]).trim().split('\n');
  const blocked = (lines: string[], name: string) => {
    const line = lines.find((l) => l.startsWith(`${name} `));
    assert.ok(line, `${name} reported: ${lines.join(' | ')}`);
    assert.match(line, new RegExp(`^${name} blocked `), line);
    return line.split(' ')[2];
  };

  for (const k of kinds) {
    const c = k.name;
    const kind = k.privileged ? 'privileged' : 'unprivileged';

    test(`${kind}: open_by_handle_at on the host filesystem's root inode (the "shocker" escape)`, () => {
      assert.equal(blocked(attempt(c, 'shocker'), 'shocker'), 'EPERM');
    });

    test(`${kind}: writing /proc/sys/kernel/core_pattern and opening /proc/sysrq-trigger for writing`, () => {
      assert.match(blocked(attempt(c, 'core-pattern'), 'core_pattern'), /^(EROFS|EACCES|EPERM)$/);
      // Absent on kernels without magic SysRq: then there is nothing to open either.
      assert.match(blocked(attempt(c, 'sysrq'), 'sysrq'), /^(EROFS|EACCES|EPERM|ENOENT)$/);
      if (!k.privileged) {
        // Around the read-only bind: a fresh procfs, whose sysctls still belong to the host's root.
        const r = t.run(['exec', c, '--', 'sh', '-c', 'mkdir -p /tmp/p && mount -t proc proc /tmp/p && cat /tmp/p/sys/kernel/core_pattern > /tmp/p/sys/kernel/core_pattern']);
        assert.notEqual(r.status, 0, 'a new /proc gives no way to the sysctls');
        t.run(['exec', c, '--', 'umount', '/tmp/p']);
      }
    });

    test(`${kind}: mounting the host's block device through a node made with mknod`, () => {
      // Made and opened on the rootfs (no nodev): refused by mknod in a user namespace, by the device controls without one.
      assert.equal(blocked(attempt(c, 'blockdev', String(major), String(minor)), 'blockdev'), 'EPERM');
      const r = t.run(['exec', c, '--', 'sh', '-c', `mknod /vda b ${major} ${minor}; mkdir -p /tmp/m; mount -o ro -t ext4 /vda /tmp/m; s=$?; rm -f /vda; exit $s`]);
      assert.notEqual(r.status, 0, `mount of the host's disk: ${r.stderr}`);
    });

    test(`${kind}: loading a kernel module, kexec_load`, () => {
      const mod = attempt(c, 'module');
      assert.equal(blocked(mod, 'init_module'), 'EPERM');
      assert.equal(blocked(mod, 'finit_module'), 'EPERM');
      const kx = attempt(c, 'kexec');
      assert.equal(blocked(kx, 'kexec_load'), 'EPERM');
      assert.equal(blocked(kx, 'kexec_file_load'), 'EPERM');
    });

    test(`${kind}: reading /proc/kcore, and the other masked files read nothing`, () => {
      // Absent when the kernel has no /proc/kcore; masked (empty) or refused otherwise.
      assert.match(blocked(attempt(c, 'kcore'), 'kcore'), /^(ENOENT|ENODATA|EACCES|EPERM)$/);
      const timers = t.run(['exec', c, '--', 'sh', '-c', 'test -e /proc/timer_list || exit 0; wc -c < /proc/timer_list']);
      assert.match(timers.stdout.trim(), /^0?$/, '/proc/timer_list shows nothing');
      assert.equal(t.ok(['exec', c, '--', 'ls', '-A', '/sys/firmware']).trim(), '', '/sys/firmware is an empty directory');
      assert.equal(t.run(['exec', c, '--', 'touch', '/sys/firmware/x']).status === 0, false);
      assert.equal(t.run(['exec', c, '--', 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']).status, 0, '/proc/sys/net is the container\'s own');
    });

    test(`${kind}: ptrace of a host process (it is not even visible)`, () => {
      assert.equal(blocked(attempt(c, 'ptrace', String(process.pid)), 'ptrace'), 'ESRCH');
      const mine = t.ok(['exec', c, '--', 'sh', '-c', `test -e /proc/${process.pid}/cmdline && cat /proc/${process.pid}/cmdline || true`]);
      assert.ok(!mine.includes('node'), 'the host pid shows no host process');
    });

    test(`${kind}: the bounding set is the documented one, and a seccomp filter is on, for init and exec`, () => {
      const hostBnd = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]}`);
      const want = (boundingMask(k.privileged) & hostBnd).toString(16).padStart(16, '0');
      for (const pid of ['1', 'self']) {
        const status = t.ok(['exec', c, '--', 'cat', `/proc/${pid}/status`]);
        assert.equal(/^CapBnd:\s*(\S+)/m.exec(status)![1], want, `CapBnd of ${pid}`);
        assert.match(status, /^Seccomp:\s*2$/m, `seccomp filter of ${pid}`);
      }
    });

    test(`${kind}: a CVE-2019-5736-style overwrite of the runtime's binary through /proc/PID/exe of an exec`, async () => {
      const bin = path.join(REPO, 'native', 'build', 'tsvz-exec');
      const before = sha256(bin);
      // A watcher inside tries to write through the exe of every process it cannot account for while execs run,
      // among them `#!/proc/self/exe` (runc's CVE: the runtime re-executed inside the container).
      t.ok(['exec', c, '--', 'sh', '-c', 'printf "#!/proc/self/exe\\n" > /tmp/evil && chmod 755 /tmp/evil && (escape exe-watch 5000 > /tmp/watch.log 2>&1 </dev/null &)']);
      for (let i = 0; i < 40; i++) {
        t.run(['exec', c, '--', '/tmp/evil']);
        t.run(['exec', c, '--', 'true']);
      }
      assert.ok(await eventually(() => /exe-watch seen/.test(t.run(['exec', c, '--', 'cat', '/tmp/watch.log']).stdout), 15_000), 'the watcher finished');
      const log = t.ok(['exec', c, '--', 'cat', '/tmp/watch.log']);
      assert.ok(!log.includes('ESCAPED'), log);
      assert.ok(Number(/exe-watch seen (\d+)/.exec(log)![1]) > 0, `the watcher caught an exec before its execve: ${log}`);
      assert.equal(sha256(bin), before, 'tsvz-exec is unchanged');
    });

    test(`${kind}: no fd of the runtime leaks into an exec (CVE-2024-21626: a cwd of /proc/self/fd/N)`, () => {
      for (let n = 3; n <= 12; n++) {
        const r = t.run(['exec', '-w', `/proc/self/fd/${n}`, c, '--', 'pwd']);
        if (r.status === 0) assert.ok(r.stdout.startsWith('/') && !r.stdout.includes('unreachable'), `cwd ${r.stdout}`);
      }
      // What the command holds: its stdio, and the directory ls reads.
      assert.deepEqual(t.ok(['exec', c, '--', 'ls', '/proc/self/fd']).trim().split('\n').map(Number).sort((a, b) => a - b), [0, 1, 2, 3]);
    });
  }

  test('unprivileged: a setuid-root binary inside gives root of the container, never of the host', async () => {
    t.ok(['exec', 'unpriv', '--', 'sh', '-c', 'cp /usr/bin/escape /usr/bin/escape-suid && chown 0:0 /usr/bin/escape-suid && chmod 4755 /usr/bin/escape-suid']);
    const p = t.spawn(['exec', 'unpriv', '--', 'escape', 'as', '65534', '/usr/bin/escape-suid', 'whoami']);
    let out = '';
    p.stdout!.on('data', (d) => { out += d; });
    try {
      assert.ok(await eventually(() => /uids \d+ \d+ \d+/.test(out), 10_000), out);
      assert.match(out, /uids 65534 0 0/, 'root inside');
      const hostPid = spawnSync('pgrep', ['-f', '^/usr/bin/escape-suid whoami'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
      const uids = /^Uid:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${hostPid}/status`, 'utf8'))![1].split(/\s+/).map(Number);
      const base = t.info('unpriv').security.uid;
      assert.ok(uids.every((u) => u >= base && u < base + 65536), `host uids ${uids} in the container's range`);
    } finally {
      p.kill('SIGKILL');
      t.run(['exec', 'unpriv', '--', 'pkill', '-f', 'escape-suid']);
    }
  });

  test('the cgroup2 device program alone refuses a host block device (as on a host without cgroup v1)', () => {
    const key = new Root(t.dir).containerKey('unpriv');
    assert.ok(fs.existsSync(`/sys/fs/cgroup/unified/tsvz/${key}`), 'the container has a cgroup2 directory');
    // A host shell that joins only the container's cgroup2 directory (not the v1 devices controller) and reads the disk.
    const r = spawnSync('sh', ['-c', `echo $$ > /sys/fs/cgroup/unified/tsvz/${key}/cgroup.procs && head -c 1 /dev/${devName(major, minor)} > /dev/null; s=$?; echo $$ > /sys/fs/cgroup/unified/cgroup.procs; exit $s`], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Operation not permitted/);
  });
});

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** The /dev name of a block device number (from /sys/dev/block). */
function devName(major: number, minor: number): string {
  return path.basename(fs.readlinkSync(`/sys/dev/block/${major}:${minor}`));
}
