import path = require('node:path');
import { readKeyed, readLimit, readNumber, readWords, writeControl } from './files';
import { CPU_PERIOD_US, cpuQuotaUs, writeLimit } from './limits';
import type { CgroupLimits, CgroupUsage } from './types';

const WANTED_CONTROLLERS = ['memory', 'cpu', 'pids'];

/**
 * In v2 a cgroup only has a controller's files when every ancestor enabled
 * it in cgroup.subtree_control. Enable what we need (and the kernel offers)
 * along the chain, top-down; already enabled ones are not rewritten.
 */
export function enableControllers(chain: readonly string[]): void {
  for (const dir of chain) {
    const available = readWords(path.join(dir, 'cgroup.controllers'));
    const enabled = readWords(path.join(dir, 'cgroup.subtree_control'));
    const missing = WANTED_CONTROLLERS.filter((c) => available.has(c) && !enabled.has(c));
    if (missing.length === 0) continue;
    const change = missing.map((c) => `+${c}`).join(' ');
    writeControl(path.join(dir, 'cgroup.subtree_control'), change, `enable cgroup controllers ${change}`);
  }
}

export function applyV2Limits(dir: string, limits: CgroupLimits): void {
  const { memoryBytes, cpus, pids } = limits;
  writeLimit(dir, 'memory.max', memoryBytes === undefined ? 'max' : String(memoryBytes), 'set memory limit', memoryBytes !== undefined);
  // No swapping past the limit; absent when the kernel has no swap accounting.
  writeLimit(dir, 'memory.swap.max', memoryBytes === undefined ? 'max' : '0', 'set swap limit', false);
  const quota = cpus === undefined ? 'max' : String(cpuQuotaUs(cpus));
  writeLimit(dir, 'cpu.max', `${quota} ${CPU_PERIOD_US}`, 'set CPU limit', cpus !== undefined);
  writeLimit(dir, 'pids.max', pids === undefined ? 'max' : String(pids), 'set pids limit', pids !== undefined);
}

export function readV2Usage(dir: string): CgroupUsage {
  const file = (name: string) => path.join(dir, name);
  return {
    memoryBytes: readNumber(file('memory.current')),
    memoryLimitBytes: readLimit(file('memory.max')),
    memoryPeakBytes: readNumber(file('memory.peak')),
    oomKills: readKeyed(file('memory.events'), 'oom_kill'),
    pids: readNumber(file('pids.current')),
    pidsLimit: readLimit(file('pids.max')),
    cpuUsageNs: readCpuStatNs(dir),
  };
}

/** cpu.stat's usage_usec exists in every v2 cgroup, even without the cpu controller. */
export function readCpuStatNs(dir: string): number | undefined {
  const usec = readKeyed(path.join(dir, 'cpu.stat'), 'usage_usec');
  return usec === undefined ? undefined : usec * 1000;
}
