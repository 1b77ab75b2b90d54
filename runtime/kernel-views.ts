/**
 * What a container sees of the host kernel through /proc and /sys
 * (native/monitor.c applies it; paths relative to the container's root).
 * runc's maskedPaths and readonlyPaths are the reference, with LXC's
 * proc:mixed for /proc/sys: read-only but for /proc/sys/net, which shows
 * the container's own network namespace. /sys is mounted read-only whole.
 *
 * In a user namespace these are a second line: the kernel already refuses
 * the container's root what belongs to the host's root (writing a sysctl,
 * reading /proc/kcore). Without one (--privileged) they are the only line,
 * and one root with CAP_SYS_ADMIN can unmount.
 */

/** Covered: a file by /dev/null, a directory by an empty read-only one. Missing ones are skipped. */
export const MASKED_PATHS: readonly string[] = [
  'proc/acpi',
  'proc/asound',
  'proc/kcore',
  'proc/keys',
  'proc/latency_stats',
  'proc/timer_list',
  'proc/timer_stats',
  'proc/sched_debug',
  'proc/scsi',
  'sys/firmware',
  'sys/devices/virtual/powercap',
];

/** Bound read-only (each over itself). */
export const READONLY_PATHS: readonly string[] = [
  'proc/bus',
  'proc/fs',
  'proc/irq',
  'proc/sys',
  'proc/sysrq-trigger',
];

/** Left writable below a read-only path. */
export const WRITABLE_PATHS: readonly string[] = [
  'proc/sys/net',
];

/** The monitor's arguments for all three lists. */
export function kernelViewArgs(): string[] {
  return [
    ...MASKED_PATHS.flatMap((p) => ['--mask', p]),
    ...READONLY_PATHS.flatMap((p) => ['--readonly', p]),
    ...WRITABLE_PATHS.flatMap((p) => ['--writable', p]),
  ];
}
