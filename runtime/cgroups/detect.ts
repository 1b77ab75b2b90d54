import fs = require('node:fs');
import path = require('node:path');
import type { CgroupMode } from './types';

export const DEFAULT_MOUNT_ROOT = '/sys/fs/cgroup';

/**
 * Which cgroup layout the host has, judged by files rather than statfs so a
 * fake tree in a test is judged the same way:
 *  - v2: the mount root itself is cgroup2 (it has cgroup.controllers);
 *  - hybrid: v1 controllers, plus cgroup2 at <root>/unified (systemd's layout);
 *  - v1: anything else.
 */
export function detectCgroupMode(mountRoot: string = DEFAULT_MOUNT_ROOT): CgroupMode {
  if (fs.existsSync(path.join(mountRoot, 'cgroup.controllers'))) return 'v2';
  if (fs.existsSync(path.join(mountRoot, 'unified', 'cgroup.controllers'))) return 'hybrid';
  return 'v1';
}

/** A v1 controller counts as mounted when its directory is a cgroup (has cgroup.procs), not a bare dir on the tmpfs. */
export function isCgroupDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'cgroup.procs'));
}

/** Co-mounted controllers (cpu,cpuacct behind two symlinks) resolve to the same hierarchy. */
export function hierarchyId(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    return dir;
  }
}
