/**
 * The capability bounding set of a container's processes (init and every
 * exec). The documented set is every capability but those below: a
 * container's root keeps what a system container's services use (mounts,
 * network configuration, chown, setuid, ptrace, ...), each of which in a
 * user namespace reaches only the container's own namespaces and files.
 */

/** linux/capability.h */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5,
  CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9, CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23, CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27, CAP_LEASE: 28, CAP_AUDIT_WRITE: 29, CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32, CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34, CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37, CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
};

/**
 * Never in any container's bounding set: each acts on the host whatever
 * namespace holds it (modules, raw I/O ports and memory, the clock, the
 * LSMs, kexec and reboot), or is not in this host's set to give
 * (CAP_SYS_RESOURCE). A container's init that asks to reboot without
 * CAP_SYS_BOOT just exits (busybox's init does), which ends the container.
 */
export const NEVER_CAPABILITIES = [
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_TIME', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_RESOURCE',
] as const;

/**
 * Also dropped without a user namespace, where they would be the host's:
 * CAP_DAC_READ_SEARCH opens any inode by handle (open_by_handle_at, the
 * "shocker" escape). CAP_SYS_ADMIN stays: a --privileged container is one
 * whose root may mount, as before user namespaces were the default, which
 * is why info and doctor warn about it.
 */
export const PRIVILEGED_ALSO_DROPPED = ['CAP_DAC_READ_SEARCH'] as const;

/** Capability numbers to drop from the bounding set. */
export function droppedCapabilities(privileged: boolean): number[] {
  const names: readonly string[] = privileged ? [...NEVER_CAPABILITIES, ...PRIVILEGED_ALSO_DROPPED] : NEVER_CAPABILITIES;
  return names.map((n) => CAPABILITIES[n]);
}

/** The bounding set as a CapBnd mask of /proc/PID/status, for `info` and tests. */
export function boundingMask(privileged: boolean, hostMask = (1n << 41n) - 1n): bigint {
  let mask = hostMask;
  for (const n of droppedCapabilities(privileged)) mask &= ~(1n << BigInt(n));
  return mask;
}
