import fs = require('node:fs');
import { getSystemErrorName } from 'node:util';
import { SystemError } from '../../lib/errors';
import { lazyLibc } from '../../lib/koffi';

/**
 * Which device nodes a container may open: the standard character devices
 * and ptys; any node may be made (mknod), none other opened. On cgroup v1
 * the devices controller enforces it (v1.ts writes devices.allow); on the
 * v2 hierarchy a BPF_PROG_TYPE_CGROUP_DEVICE program does, attached to the
 * container's cgroup (as runc and crun do). A hybrid host has both, and the
 * kernel asks both.
 */

export interface DeviceRule {
  type: 'c' | 'b';
  /** undefined: any. */
  major?: number;
  minor?: number;
  /** r, w, m (mknod). */
  access: string;
}

export const DEVICE_ALLOW: readonly DeviceRule[] = [
  { type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { type: 'c', major: 5, minor: 1, access: 'rwm' }, // console
  { type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { type: 'c', major: 136, access: 'rwm' }, // pts
  { type: 'c', access: 'm' },
  { type: 'b', access: 'm' },
];

/** The rules as devices.allow lines ("c 1:3 rwm"). */
export function v1DeviceRules(rules: readonly DeviceRule[] = DEVICE_ALLOW): string[] {
  return rules.map((r) => `${r.type} ${r.major ?? '*'}:${r.minor ?? '*'} ${r.access}`);
}

// include/uapi/linux/bpf.h
const BPF_DEVCG_ACC_MKNOD = 1;
const BPF_DEVCG_ACC_READ = 2;
const BPF_DEVCG_ACC_WRITE = 4;
const BPF_DEVCG_DEV_BLOCK = 1;
const BPF_DEVCG_DEV_CHAR = 2;

/** One eBPF instruction: opcode, dst and src registers, offset, immediate. */
function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(code, 0);
  b.writeUInt8((src << 4) | dst, 1);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}
const LDX_W = 0x61; // dst = *(u32 *)(src + off)
const MOV_REG = 0xbf;
const MOV_IMM = 0xb7;
const AND_IMM = 0x57;
const RSH_IMM = 0x77;
const JNE_IMM = 0x55; // if dst != imm goto +off
const EXIT = 0x95;

function accessBits(access: string): number {
  return (access.includes('m') ? BPF_DEVCG_ACC_MKNOD : 0) | (access.includes('r') ? BPF_DEVCG_ACC_READ : 0) | (access.includes('w') ? BPF_DEVCG_ACC_WRITE : 0);
}

/**
 * The rules as a cgroup device program: r2 = type, r3 = access, r4 =
 * major, r5 = minor (struct bpf_cgroup_dev_ctx); each rule a block that
 * returns 1 (allow) when it matches and jumps to the next otherwise; 0 at
 * the end.
 */
export function deviceProgram(rules: readonly DeviceRule[] = DEVICE_ALLOW): Buffer {
  const out: Buffer[] = [
    insn(LDX_W, 2, 1, 0, 0),
    insn(MOV_REG, 3, 2, 0, 0),
    insn(AND_IMM, 2, 0, 0, 0xffff),
    insn(RSH_IMM, 3, 0, 0, 16),
    insn(LDX_W, 4, 1, 4, 0),
    insn(LDX_W, 5, 1, 8, 0),
  ];
  for (const r of rules) {
    const block: [number, number, number, number][] = [];
    block.push([JNE_IMM, 2, 0, r.type === 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK]);
    if (r.major !== undefined) block.push([JNE_IMM, 4, 0, r.major]);
    if (r.minor !== undefined) block.push([JNE_IMM, 5, 0, r.minor]);
    // Every access asked for must be one the rule allows.
    const denied = ~accessBits(r.access) & 7;
    const tail: Buffer[] = [insn(MOV_REG, 6, 3, 0, 0), insn(AND_IMM, 6, 0, 0, denied), insn(JNE_IMM, 6, 0, 2, 0), insn(MOV_IMM, 0, 0, 0, 1), insn(EXIT, 0, 0, 0, 0)];
    // Each test jumps past the rest of its block: the later tests, then the tail.
    block.forEach(([code, dst, , imm], i) => out.push(insn(code, dst, 0, block.length - 1 - i + tail.length, imm)));
    out.push(...tail);
  }
  out.push(insn(MOV_IMM, 0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0));
  return Buffer.concat(out);
}

// bpf(2) commands, program and attach types, flags.
const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_QUERY = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
const BPF_CGROUP_DEVICE = 6;
const BPF_F_ALLOW_MULTI = 2;
const SYS_BPF = 321; // x86-64
const ATTR_SIZE = 128;

interface Libc {
  syscall(nr: number, cmd: number, attr: Buffer, size: number): number;
  close(fd: number): number;
  errno(): number;
  /** Copy `data` into native memory for a pointer field of a bpf_attr; `free` when done. */
  native(data: Buffer): { address: bigint; free(): void };
}

const libc = lazyLibc((lib, koffi): Libc => {
  const syscall = lib.func('long syscall(long nr, ...)');
  return {
    syscall: (nr, cmd, attr, size) => Number(syscall(nr, 'int', cmd, 'void *', attr, 'unsigned int', size)),
    close: lib.func('int close(int fd)'),
    errno: () => koffi.errno() as number,
    native: (data) => {
      const ptr: unknown = koffi.alloc('uint8_t', data.length);
      new Uint8Array(koffi.view(ptr, data.length)).set(data);
      return { address: koffi.address(ptr), free: () => koffi.free(ptr) };
    },
  };
});

function bpf(cmd: number, attr: Buffer, what: string): number {
  const l = libc();
  const r = l.syscall(SYS_BPF, cmd, attr, ATTR_SIZE);
  if (r < 0) {
    const errno = l.errno();
    throw new SystemError(`cannot ${what}: bpf failed (${getSystemErrorName(-errno)})`, Object.assign(new Error(getSystemErrorName(-errno)), { errno }));
  }
  return r;
}

/**
 * Attach the device program to the cgroup2 directory `dir` unless one is
 * there already (tsvz's: the directory is the container's, and start
 * re-applies on an existing cgroup).
 */
export function attachDeviceProgram(dir: string): void {
  const cg = fs.openSync(dir, 'r');
  try {
    const query = Buffer.alloc(ATTR_SIZE);
    query.writeUInt32LE(cg, 0);
    query.writeUInt32LE(BPF_CGROUP_DEVICE, 4);
    bpf(BPF_PROG_QUERY, query, `query the device programs of ${dir}`);
    if (query.readUInt32LE(24) > 0) return;

    const code = deviceProgram();
    const insns = libc().native(code);
    const license = libc().native(Buffer.from('Apache-2.0\0'));
    let prog: number;
    try {
      const load = Buffer.alloc(ATTR_SIZE);
      load.writeUInt32LE(BPF_PROG_TYPE_CGROUP_DEVICE, 0);
      load.writeUInt32LE(code.length / 8, 4);
      load.writeBigUInt64LE(insns.address, 8);
      load.writeBigUInt64LE(license.address, 16);
      load.write('tsvz_devices', 48);
      load.writeUInt32LE(BPF_CGROUP_DEVICE, 68);
      prog = bpf(BPF_PROG_LOAD, load, 'load the device program');
    } finally {
      insns.free();
      license.free();
    }
    try {
      const attach = Buffer.alloc(ATTR_SIZE);
      attach.writeUInt32LE(cg, 0);
      attach.writeUInt32LE(prog, 4);
      attach.writeUInt32LE(BPF_CGROUP_DEVICE, 8);
      attach.writeUInt32LE(BPF_F_ALLOW_MULTI, 12);
      bpf(BPF_PROG_ATTACH, attach, `attach the device program to ${dir}`);
    } finally {
      libc().close(prog);
    }
  } finally {
    fs.closeSync(cg);
  }
}
