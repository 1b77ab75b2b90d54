import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, NotSupportedError } from '../../lib/errors';
import { writeControl } from './files';
import type { CgroupLimits } from './types';

/** The CFS period both versions use; cpus scale the quota against it. */
export const CPU_PERIOD_US = 100000;
/** The kernel rejects quotas below 1 ms. */
const MIN_CPU_QUOTA_US = 1000;

export function cpuQuotaUs(cpus: number): number {
  return Math.max(MIN_CPU_QUOTA_US, Math.round(cpus * CPU_PERIOD_US));
}

export function validateLimits(limits: CgroupLimits): void {
  const { memoryBytes, cpus, pids } = limits;
  if (memoryBytes !== undefined && !(Number.isSafeInteger(memoryBytes) && memoryBytes > 0)) {
    throw new InvalidArgumentError(`invalid memory limit ${memoryBytes}`, 'use a positive number of bytes');
  }
  if (cpus !== undefined && !(Number.isFinite(cpus) && cpus > 0)) {
    throw new InvalidArgumentError(`invalid CPU limit ${cpus}`, 'use a positive number such as 1 or 0.5');
  }
  if (pids !== undefined && !(Number.isSafeInteger(pids) && pids > 0)) {
    throw new InvalidArgumentError(`invalid pids limit ${pids}`, 'use a positive integer');
  }
}

/**
 * Write one limit file `name` (e.g. "memory.max") in `dir`. A missing dir or
 * file means its controller is unavailable: fine when the limit is
 * "unlimited" anyway, an error when the user asked for a limit we could not
 * enforce.
 */
export function writeLimit(dir: string | undefined, name: string, value: string, what: string, requested: boolean): void {
  const file = dir === undefined ? undefined : path.join(dir, name);
  if (file === undefined || !fs.existsSync(file)) {
    if (!requested) return;
    const controller = name.split('.')[0];
    throw new NotSupportedError(
      `cannot ${what}: the ${controller} cgroup controller is not available${file ? ` (no ${file})` : ''}`,
      `run on a host with the ${controller} controller enabled, or drop the limit`,
    );
  }
  writeControl(file, value, what);
}
