import fs = require('node:fs');
import path = require('node:path');
import { errnoCode } from '../../lib/errors';
import { readKeyed, readLimit, readNumber, readText, writeControl } from './files';
import { CPU_PERIOD_US, cpuQuotaUs, writeLimit } from './limits';
import type { CgroupLimits, CgroupUsage } from './types';
import { v1DeviceRules } from './devices';

/** The v1 controllers a container joins; cpuset is left out (it needs cpus/mems set before anyone can join). */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'devices'] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];

/** Controller → the container's directory in that controller's hierarchy (only mounted controllers). */
export type V1Dirs = ReadonlyMap<V1Controller, string>;

/** Device nodes a system container may open (devices.ts); mknod is allowed for any, opening the rest is not. */
export const DEVICE_RULES: readonly string[] = v1DeviceRules();

const MEMSW = 'memory.memsw.limit_in_bytes';

export function applyV1Limits(dirs: V1Dirs, limits: CgroupLimits): void {
  setMemory(dirs.get('memory'), limits.memoryBytes);
  setCpu(dirs.get('cpu'), limits.cpus);
  writeLimit(dirs.get('pids'), 'pids.max', limits.pids === undefined ? 'max' : String(limits.pids), 'set pids limit', limits.pids !== undefined);
  const devices = dirs.get('devices');
  if (devices) setDevices(devices);
}

/**
 * memory.limit_in_bytes, then memory.memsw.limit_in_bytes (memory+swap) to
 * the same value so the container cannot swap past its limit. The kernel
 * insists limit <= memsw limit, so raising a limit (or lifting it: -1) fails
 * with EINVAL until memsw is raised first: then do it in that order.
 */
function setMemory(dir: string | undefined, bytes: number | undefined): void {
  const value = bytes === undefined ? '-1' : String(bytes);
  if (dir === undefined || !fs.existsSync(path.join(dir, MEMSW))) {
    // No memory controller, or no swap accounting: just the plain limit.
    writeLimit(dir, 'memory.limit_in_bytes', value, 'set memory limit', bytes !== undefined);
    return;
  }
  const limit = path.join(dir, 'memory.limit_in_bytes');
  const memsw = path.join(dir, MEMSW);
  try {
    writeControl(limit, value, 'set memory limit');
  } catch (err) {
    if (errnoCode(err) !== 'EINVAL') throw err;
    writeControl(memsw, value, 'set memory+swap limit');
    writeControl(limit, value, 'set memory limit');
  }
  writeControl(memsw, value, 'set memory+swap limit');
}

function setCpu(dir: string | undefined, cpus: number | undefined): void {
  const requested = cpus !== undefined;
  writeLimit(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US), 'set CPU period', requested);
  writeLimit(dir, 'cpu.cfs_quota_us', requested ? String(cpuQuotaUs(cpus)) : '-1', 'set CPU limit', requested);
}

/**
 * Deny everything, then allow the standard nodes. Skipped when the list is
 * already exactly that: re-applying would briefly deny /dev/null to a
 * running container.
 */
function setDevices(dir: string): void {
  if (sameRules(readText(path.join(dir, 'devices.list')), DEVICE_RULES)) return;
  writeControl(path.join(dir, 'devices.deny'), 'a', 'restrict devices');
  writeControl(path.join(dir, 'devices.allow'), DEVICE_RULES, 'allow devices');
}

function sameRules(list: string | undefined, rules: readonly string[]): boolean {
  if (list === undefined) return false;
  const current = list.split('\n').map((l) => l.trim()).filter(Boolean).sort();
  return current.join('\n') === [...rules].sort().join('\n');
}

export function readV1Usage(dirs: V1Dirs): CgroupUsage {
  const memory = dirs.get('memory');
  const pids = dirs.get('pids');
  const cpuacct = dirs.get('cpuacct');
  const at = (dir: string | undefined, name: string) => (dir === undefined ? undefined : path.join(dir, name));
  const num = (file: string | undefined) => (file === undefined ? undefined : readNumber(file));
  const limit = (file: string | undefined) => (file === undefined ? undefined : readLimit(file));
  const oom = at(memory, 'memory.oom_control');
  return {
    memoryBytes: num(at(memory, 'memory.usage_in_bytes')),
    memoryLimitBytes: limit(at(memory, 'memory.limit_in_bytes')),
    memoryPeakBytes: num(at(memory, 'memory.max_usage_in_bytes')),
    oomKills: oom === undefined ? undefined : readKeyed(oom, 'oom_kill'),
    pids: num(at(pids, 'pids.current')),
    pidsLimit: limit(at(pids, 'pids.max')),
    cpuUsageNs: num(at(cpuacct, 'cpuacct.usage')),
  };
}
