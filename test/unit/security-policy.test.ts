import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { boundingMask, CAPABILITIES, droppedCapabilities, NEVER_CAPABILITIES } from '../../runtime/capabilities';
import { DEVICE_ALLOW, deviceProgram, v1DeviceRules } from '../../runtime/cgroups/devices';
import { IDMAP_SIZE, parseSubordinate, slotMap, validateIdMap } from '../../runtime/idmap';
import { kernelViewArgs, MASKED_PATHS, READONLY_PATHS, WRITABLE_PATHS } from '../../runtime/kernel-views';
import { SECCOMP_DENY, seccompSpec, validateAllowSyscalls } from '../../runtime/seccomp';

describe('subordinate id ranges and slots', () => {
  const text = '# comment\nalice:100000:65536\ntsvz:1879048192:268304384\n999:5:5\n';

  it('finds the tsvz range by name, or by uid', () => {
    assert.deepEqual(parseSubordinate(text, 'tsvz'), { start: 1879048192, count: 268304384 });
    assert.deepEqual(parseSubordinate(text, 'nobody-here', 999), { start: 5, count: 5 });
    assert.equal(parseSubordinate(text, 'bob'), undefined);
    assert.equal(parseSubordinate('tsvz:4294967000:65536\n', 'tsvz'), undefined, 'a range past 2^32 is no range');
  });

  it('slot 0 is the shared range; every slot is 65536 ids of its own', () => {
    const r = { uid: { start: 1000, count: 10 * IDMAP_SIZE }, gid: { start: 5000, count: 10 * IDMAP_SIZE } };
    assert.deepEqual(slotMap(r, 0, 'idmapped'), { uid: 1000, gid: 5000, size: IDMAP_SIZE, shared: true, rootfs: 'idmapped' });
    assert.deepEqual(slotMap(r, 3, 'shifted'), { uid: 1000 + 3 * IDMAP_SIZE, gid: 5000 + 3 * IDMAP_SIZE, size: IDMAP_SIZE, rootfs: 'shifted' });
  });

  it('a recorded map is checked before use: no host root, the one size, a known rootfs kind', () => {
    assert.doesNotThrow(() => validateIdMap({ uid: 70000, gid: 70000, size: IDMAP_SIZE, rootfs: 'idmapped' }));
    for (const bad of [
      { uid: 0, gid: 70000, size: IDMAP_SIZE, rootfs: 'idmapped' },
      { uid: 70000, gid: 70000, size: 1 << 20, rootfs: 'idmapped' },
      { uid: 70000, gid: 70000, size: IDMAP_SIZE, rootfs: 'other' },
      { uid: 2 ** 32 - 10, gid: 70000, size: IDMAP_SIZE, rootfs: 'shifted' },
      null,
    ]) assert.throws(() => validateIdMap(bad), /invalid id map/);
  });
});

describe('the seccomp filter', () => {
  it("denies what LXC's and Docker's defaults deny for a system container", () => {
    const denied = new Set(SECCOMP_DENY.map((r) => r.syscall));
    for (const s of ['open_by_handle_at', 'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'bpf', 'perf_event_open', 'keyctl', 'add_key', 'request_key', 'open_tree', 'move_mount', 'fsopen', 'mount_setattr']) {
      assert.ok(denied.has(s), s);
    }
    // What init and CRIU's restore need stays.
    for (const s of ['mount', 'umount2', 'clone', 'clone3', 'unshare', 'setns', 'ptrace', 'reboot', 'pivot_root', 'mknod', 'io_uring_setup', 'userfaultfd']) {
      assert.ok(!SECCOMP_DENY.some((r) => r.syscall === s && !r.arg), `${s} is allowed`);
    }
  });

  it('is written as native/seccomp.h reads it, and only optional rules can be lifted', () => {
    const spec = seccompSpec();
    assert.match(spec, /(^|,)open_by_handle_at:1(,|$)/);
    assert.match(spec, /(^|,)keyctl:38(,|$)/);
    assert.match(spec, /(^|,)umount2:1:1:1(,|$)/, 'umount2 only with MNT_FORCE');
    for (const entry of spec.split(',')) assert.match(entry, /^[a-z0-9_]+:\d+(:\d:\d+)?$/);
    assert.ok(!seccompSpec(['bpf']).split(',').some((e) => e.startsWith('bpf:')));
    assert.deepEqual(validateAllowSyscalls(['perf_event_open', 'bpf', 'bpf']), ['bpf', 'perf_event_open']);
    assert.throws(() => validateAllowSyscalls(['open_by_handle_at']), /cannot be allowed/);
    assert.throws(() => validateAllowSyscalls(['kexec_load']), /cannot be allowed/);
  });
});

describe('the bounding set', () => {
  it('never holds what acts on the host from any namespace; without a user namespace not DAC_READ_SEARCH either', () => {
    for (const privileged of [false, true]) {
      const mask = boundingMask(privileged);
      for (const name of NEVER_CAPABILITIES) assert.equal((mask >> BigInt(CAPABILITIES[name])) & 1n, 0n, `${name} (privileged ${privileged})`);
      assert.equal((mask >> BigInt(CAPABILITIES.CAP_SYS_ADMIN)) & 1n, 1n, 'CAP_SYS_ADMIN stays (a system container mounts)');
    }
    assert.equal((boundingMask(true) >> 2n) & 1n, 0n, 'no CAP_DAC_READ_SEARCH without a user namespace');
    assert.equal((boundingMask(false) >> 2n) & 1n, 1n, 'CAP_DAC_READ_SEARCH inside a user namespace reaches only its own files');
    assert.deepEqual(droppedCapabilities(false).sort((a, b) => a - b), [16, 17, 22, 24, 25, 32, 33]);
  });
});

describe('/proc and /sys as the container sees them', () => {
  it("masks runc's maskedPaths, binds read-only its readonlyPaths, keeps /proc/sys/net writable", () => {
    for (const p of ['proc/kcore', 'proc/keys', 'proc/timer_list', 'proc/sched_debug', 'sys/firmware']) assert.ok(MASKED_PATHS.includes(p), p);
    for (const p of ['proc/sys', 'proc/sysrq-trigger', 'proc/irq', 'proc/bus']) assert.ok(READONLY_PATHS.includes(p), p);
    assert.deepEqual([...WRITABLE_PATHS], ['proc/sys/net']);
    for (const p of [...MASKED_PATHS, ...READONLY_PATHS, ...WRITABLE_PATHS]) assert.ok(!p.startsWith('/') && !p.includes('..'), p);
    const args = kernelViewArgs();
    assert.equal(args.filter((a) => a === '--mask').length, MASKED_PATHS.length);
  });
});

/** Runs the device program on one access, as the kernel's BPF interpreter would (only the opcodes it uses). */
function runDeviceProgram(code: Buffer, type: 'c' | 'b', major: number, minor: number, access: string): number {
  const acc = (access.includes('m') ? 1 : 0) | (access.includes('r') ? 2 : 0) | (access.includes('w') ? 4 : 0);
  const ctx = [(acc << 16) | (type === 'c' ? 2 : 1), major, minor];
  const r = new Array<number>(11).fill(0);
  for (let pc = 0; pc < code.length / 8; pc++) {
    const op = code.readUInt8(pc * 8);
    const regs = code.readUInt8(pc * 8 + 1);
    const dst = regs & 0xf;
    const src = regs >> 4;
    const off = code.readInt16LE(pc * 8 + 2);
    const imm = code.readInt32LE(pc * 8 + 4);
    switch (op) {
      case 0x61: r[dst] = ctx[off / 4]; break;
      case 0xbf: r[dst] = r[src]; break;
      case 0xb7: r[dst] = imm; break;
      case 0x57: r[dst] = (r[dst] & imm) >>> 0; break;
      case 0x77: r[dst] = r[dst] >>> imm; break;
      case 0x55: if (r[dst] !== imm) pc += off; break;
      case 0x95: return r[0];
      default: throw new Error(`opcode 0x${op.toString(16)}`);
    }
  }
  throw new Error('fell off the end');
}

describe('the cgroup2 device program', () => {
  const prog = deviceProgram();

  it('allows the standard nodes and ptys, mknod of anything, and nothing else', () => {
    for (const [maj, min] of [[1, 3], [1, 5], [1, 7], [1, 8], [1, 9], [5, 0], [5, 1], [5, 2], [136, 0], [136, 77]]) {
      assert.equal(runDeviceProgram(prog, 'c', maj, min, 'rw'), 1, `c ${maj}:${min}`);
    }
    assert.equal(runDeviceProgram(prog, 'b', 254, 0, 'm'), 1, 'mknod of a block device');
    assert.equal(runDeviceProgram(prog, 'c', 10, 200, 'm'), 1, 'mknod of a char device');
    assert.equal(runDeviceProgram(prog, 'b', 254, 0, 'r'), 0, 'reading the host disk');
    assert.equal(runDeviceProgram(prog, 'b', 7, 0, 'rw'), 0, 'a loop device');
    assert.equal(runDeviceProgram(prog, 'c', 1, 1, 'r'), 0, '/dev/mem');
    assert.equal(runDeviceProgram(prog, 'c', 10, 237, 'rw'), 0, '/dev/loop-control');
    assert.equal(runDeviceProgram(prog, 'c', 4, 1, 'w'), 0, 'a host tty');
    assert.equal(runDeviceProgram(prog, 'c', 1, 3, 'rwm'), 1);
  });

  it('says the same as the v1 devices.allow lines', () => {
    assert.deepEqual(v1DeviceRules(), ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:1 rwm', 'c 5:2 rwm', 'c 136:* rwm', 'c *:* m', 'b *:* m']);
    assert.equal(DEVICE_ALLOW.length, 11);
  });
});
