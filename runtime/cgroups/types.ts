export type CgroupMode = 'v1' | 'v2' | 'hybrid';

export interface CgroupLimits {
  memoryBytes?: number;
  /** CPUs' worth of time per period: 0.5 → quota 50000 of a 100000 µs period. */
  cpus?: number;
  pids?: number;
}

/** Current counters; a field is absent when the kernel does not offer it (or it is unlimited). */
export interface CgroupUsage {
  memoryBytes?: number;
  memoryLimitBytes?: number;
  memoryPeakBytes?: number;
  pids?: number;
  pidsLimit?: number;
  oomKills?: number;
  cpuUsageNs?: number;
}
