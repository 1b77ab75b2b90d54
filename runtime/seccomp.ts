import { InvalidArgumentError } from '../lib/errors';

/**
 * The seccomp filter of every container process (init and every exec),
 * installed by native/ last before exec (native/seccomp.h). A deny list, as
 * LXC's default for system containers: a system container runs whatever
 * its distribution does, so everything is allowed but what reaches the
 * host kernel's global state or has been the way out of containers (LXC's
 * and Docker's default profiles deny these). CRIU is not hindered: its dump
 * runs its parasite with the filter suspended (PTRACE_O_SUSPEND_SECCOMP) and
 * its restore installs the saved filter last, after everything it does.
 */

const EPERM = 1;
const ENOSYS = 38;

export interface SeccompRule {
  syscall: string;
  /** EPERM: refused. ENOSYS: "not there", so programs take their fallback (the old mount API, no keyring). */
  errno: typeof EPERM | typeof ENOSYS;
  /** Only when argument `index` has all of `mask`'s bits set. */
  arg?: { index: number; mask: number };
  /** May be allowed per container (`create --allow-syscall`). */
  optional?: boolean;
  why: string;
}

export const SECCOMP_DENY: readonly SeccompRule[] = [
  { syscall: 'open_by_handle_at', errno: EPERM, why: 'opens any inode of a filesystem by its handle, outside any root (the "shocker" escape)' },
  { syscall: 'kexec_load', errno: EPERM, why: 'replaces the running kernel' },
  { syscall: 'kexec_file_load', errno: EPERM, why: 'replaces the running kernel' },
  { syscall: 'init_module', errno: EPERM, why: 'loads kernel code' },
  { syscall: 'finit_module', errno: EPERM, why: 'loads kernel code' },
  { syscall: 'delete_module', errno: EPERM, why: 'unloads kernel code' },
  { syscall: 'create_module', errno: EPERM, why: 'obsolete module interface' },
  { syscall: 'iopl', errno: EPERM, why: 'raw I/O port access' },
  { syscall: 'ioperm', errno: EPERM, why: 'raw I/O port access' },
  { syscall: 'swapon', errno: EPERM, why: "changes the host's swap" },
  { syscall: 'swapoff', errno: EPERM, why: "changes the host's swap" },
  { syscall: 'acct', errno: EPERM, why: 'process accounting is host-wide' },
  { syscall: 'syslog', errno: EPERM, why: "reads or clears the host kernel's log" },
  { syscall: 'lookup_dcookie', errno: EPERM, why: 'kernel profiling interface' },
  { syscall: 'uselib', errno: EPERM, why: 'obsolete' },
  { syscall: 'nfsservctl', errno: EPERM, why: 'obsolete' },
  { syscall: 'vm86', errno: EPERM, why: 'obsolete, a history of kernel bugs' },
  { syscall: 'vm86old', errno: EPERM, why: 'obsolete, a history of kernel bugs' },
  { syscall: '_sysctl', errno: EPERM, why: 'obsolete sysctl interface, around /proc/sys' },
  { syscall: 'umount2', errno: EPERM, arg: { index: 1, mask: 1 }, why: "MNT_FORCE aborts a filesystem's requests host-wide (LXC's reject_force_umount)" },
  // The new mount API works on mount objects by fd: an fd of the host's (leaked, or passed in) would be a way to
  // clone or move a host mount. Programs fall back to mount(2), which sees only the container's paths.
  { syscall: 'open_tree', errno: ENOSYS, why: 'new mount API: clones mounts by fd' },
  { syscall: 'move_mount', errno: ENOSYS, why: 'new mount API: attaches mounts by fd' },
  { syscall: 'fsopen', errno: ENOSYS, why: 'new mount API' },
  { syscall: 'fsconfig', errno: ENOSYS, why: 'new mount API' },
  { syscall: 'fsmount', errno: ENOSYS, why: 'new mount API' },
  { syscall: 'fspick', errno: ENOSYS, why: 'new mount API: reconfigures a superblock by fd' },
  { syscall: 'mount_setattr', errno: ENOSYS, why: 'new mount API: changes mount attributes (idmaps) by fd' },
  { syscall: 'bpf', errno: EPERM, optional: true, why: 'kernel programs; a large attack surface' },
  { syscall: 'perf_event_open', errno: EPERM, optional: true, why: 'host-wide performance counters; a large attack surface' },
  // Keyrings are not namespaced: ENOSYS, as LXC, so programs carry on without them.
  { syscall: 'keyctl', errno: ENOSYS, optional: true, why: 'kernel keyrings are shared with the host' },
  { syscall: 'add_key', errno: ENOSYS, optional: true, why: 'kernel keyrings are shared with the host' },
  { syscall: 'request_key', errno: ENOSYS, optional: true, why: 'kernel keyrings are shared with the host' },
];

/** Check a container's --allow-syscall list: only the optional rules can be lifted. */
export function validateAllowSyscalls(names: unknown): string[] {
  if (!Array.isArray(names)) throw new InvalidArgumentError('allowed syscalls are not a list');
  const optional = SECCOMP_DENY.filter((r) => r.optional).map((r) => r.syscall);
  for (const n of names) {
    if (typeof n !== 'string' || !optional.includes(n)) {
      throw new InvalidArgumentError(`syscall ${JSON.stringify(String(n)).slice(0, 40)} cannot be allowed`, `allowable: ${optional.join(', ')}`);
    }
  }
  return [...new Set(names as string[])].sort();
}

/** The filter as native/seccomp.h reads it: NAME:ERRNO[:ARG:MASK],... */
export function seccompSpec(allow: readonly string[] = []): string {
  return SECCOMP_DENY.filter((r) => !allow.includes(r.syscall))
    .map((r) => (r.arg ? `${r.syscall}:${r.errno}:${r.arg.index}:${r.arg.mask}` : `${r.syscall}:${r.errno}`))
    .join(',');
}
