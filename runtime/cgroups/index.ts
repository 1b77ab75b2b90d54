import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, NotSupportedError, SystemError } from '../../lib/errors';
import { pollUntil } from '../../lib/poll';
import { DEFAULT_MOUNT_ROOT, detectCgroupMode, hierarchyId, isCgroupDir } from './detect';
import { makeDir, readPids, removeDir, removeDirIfUnused, writeControlIfPresent } from './files';
import { validateLimits } from './limits';
import { applyV1Limits, readV1Usage, V1_CONTROLLERS, V1Controller } from './v1';
import { applyV2Limits, enableControllers, readCpuStatNs, readV2Usage } from './v2';
import type { CgroupLimits, CgroupMode, CgroupUsage } from './types';
import { attachDeviceProgram } from './devices';

export type { CgroupLimits, CgroupMode, CgroupUsage } from './types';
export { detectCgroupMode } from './detect';

/** Every container cgroup lives under this directory at the root of each hierarchy. */
const PARENT = 'tsvz';
/** How long killAll and remove wait for dying processes to leave the cgroup. */
const SETTLE_MS = 2000;
const POLL_MS = 20;

/**
 * The cgroup(s) of one container. The paths are fixed at construction, so
 * every method works from the leaf name alone, also after a crash.
 *
 * v1/hybrid: <root>/<controller>/tsvz/<leaf> for each mounted controller of
 * V1_CONTROLLERS (plus <root>/unified/tsvz/<leaf> when hybrid); v2:
 * <root>/tsvz/<leaf>. Created at the hierarchy roots, not below our own
 * cgroup: the runtime's cgroup is not the containers' business.
 */
export class ContainerCgroups {
  readonly mode: CgroupMode;
  private readonly leaf: string;
  private readonly root: string;
  /** Controller → leaf dir; co-mounted controllers share one dir. */
  private readonly v1: Map<V1Controller, string>;
  private readonly unified?: string;

  constructor(leaf: string, opts: { mountRoot?: string; mode?: CgroupMode } = {}) {
    validateLeaf(leaf);
    this.leaf = leaf;
    this.root = opts.mountRoot ?? DEFAULT_MOUNT_ROOT;
    this.mode = opts.mode ?? detectCgroupMode(this.root);
    this.v1 = this.mode === 'v2' ? new Map() : v1LeafDirs(this.root, leaf);
    if (this.mode === 'v2') this.unified = path.join(this.root, PARENT, leaf);
    if (this.mode === 'hybrid') this.unified = path.join(this.root, 'unified', PARENT, leaf);
  }

  /** Create the directories (reusing existing ones) and (re)apply every limit. */
  async create(limits: CgroupLimits): Promise<void> {
    validateLimits(limits);
    const dirs = this.dirs();
    if (dirs.length === 0) {
      throw new NotSupportedError(`no cgroup hierarchy found under ${this.root}`, 'mount cgroup2 (or the v1 controllers) at /sys/fs/cgroup');
    }
    const fresh = !this.exists();
    try {
      if (this.mode === 'v2') this.prepareV2Parent();
      for (const dir of dirs) makeDir(dir);
      if (this.v1.size > 0) applyV1Limits(this.v1, limits);
      if (this.mode === 'v2') applyV2Limits(this.unified!, limits);
      // The v2 hierarchy's device control, also on a hybrid host, where the kernel asks it as well as v1's controller.
      if (this.unified && isCgroup2(this.unified)) attachDeviceProgram(this.unified);
    } catch (err) {
      // Leave nothing half-made behind; an existing (maybe running) cgroup is left alone.
      if (fresh) await this.removeQuietly();
      throw err;
    }
  }

  procsFiles(): string[] {
    return this.dirs().map((dir) => path.join(dir, 'cgroup.procs'));
  }

  freezerPath(): string | undefined {
    return this.v1.get('freezer');
  }

  unifiedPath(): string | undefined {
    return this.unified;
  }

  usage(): CgroupUsage {
    if (this.mode === 'v2') return compact(readV2Usage(this.unified!));
    const usage = readV1Usage(this.v1);
    // Without a cpuacct hierarchy, the unified cgroup still counts CPU time.
    if (usage.cpuUsageNs === undefined && this.unified) usage.cpuUsageNs = readCpuStatNs(this.unified);
    return compact(usage);
  }

  pids(): number[] {
    const dir = this.mode === 'v2' ? this.unified : this.v1.get('pids') ?? this.v1.get('memory') ?? this.dirs()[0];
    return dir === undefined ? [] : readPids(path.join(dir, 'cgroup.procs'));
  }

  /** True while any of the container's directories is left (so remove() still has work). */
  exists(): boolean {
    return this.dirs().some((dir) => fs.existsSync(dir));
  }

  async killAll(): Promise<void> {
    this.thaw();
    if (this.unified) writeControlIfPresent(path.join(this.unified, 'cgroup.kill'), '1', 'kill the container');
    // Also signal pid by pid: covers kernels without cgroup.kill and a
    // process that joined only some hierarchies; repeating catches forks.
    // Killed processes leave within a few ms: look again soon, then less often.
    const gone = await pollUntil(() => {
      const pids = this.allPids();
      for (const pid of pids) sigkill(pid);
      return pids.length === 0;
    }, { timeoutMs: SETTLE_MS, maxMs: POLL_MS });
    if (!gone) {
      throw new SystemError(`cannot kill the processes of cgroup ${PARENT}/${this.leaf}: still there after SIGKILL: ${this.allPids().join(' ')}`);
    }
  }

  async remove(): Promise<void> {
    const dirs = this.dirs();
    for (const dir of dirs) await removeDir(dir, SETTLE_MS);
    for (const parent of new Set(dirs.map((dir) => path.dirname(dir)))) removeDirIfUnused(parent);
  }

  /** Each distinct leaf directory: v1 ones in V1_CONTROLLERS order, then the unified one. */
  private dirs(): string[] {
    const dirs = [...new Set(this.v1.values())];
    return this.unified ? [...dirs, this.unified] : dirs;
  }

  private allPids(): number[] {
    const all = new Set(this.procsFiles().flatMap(readPids));
    // Never ourselves or init, whatever a broken tree says: that is not a container.
    all.delete(process.pid);
    all.delete(1);
    return [...all];
  }

  /** A v1-frozen process keeps a SIGKILL pending until thawed; v2 delivers it, but thaw both anyway. */
  private thaw(): void {
    const freezer = this.v1.get('freezer');
    if (freezer) writeControlIfPresent(path.join(freezer, 'freezer.state'), 'THAWED', 'thaw the container');
    if (this.unified) writeControlIfPresent(path.join(this.unified, 'cgroup.freeze'), '0', 'thaw the container');
  }

  private prepareV2Parent(): void {
    const parent = path.dirname(this.unified!);
    makeDir(parent);
    enableControllers([this.root, parent]);
  }

  private async removeQuietly(): Promise<void> {
    try {
      await this.remove();
    } catch {
      /* the original error matters more */
    }
  }
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** A directory of a real cgroup2 hierarchy (not a test's plain directory standing in for one). */
function isCgroup2(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}

function validateLeaf(leaf: string): void {
  if (typeof leaf !== 'string' || leaf === '' || leaf === '.' || leaf.includes('/') || leaf.includes('..') || leaf.includes('\0')) {
    throw new InvalidArgumentError(`invalid cgroup name "${JSON.stringify(String(leaf)).slice(1, -1)}"`, 'a cgroup name is one path component without ".."');
  }
}

/** The leaf dir per mounted v1 controller; controllers mounted together share the first one's path. */
function v1LeafDirs(root: string, leaf: string): Map<V1Controller, string> {
  const dirs = new Map<V1Controller, string>();
  const byHierarchy = new Map<string, string>();
  for (const controller of V1_CONTROLLERS) {
    const mount = path.join(root, controller);
    if (!isCgroupDir(mount)) continue;
    const id = hierarchyId(mount);
    if (!byHierarchy.has(id)) byHierarchy.set(id, path.join(mount, PARENT, leaf));
    dirs.set(controller, byHierarchy.get(id)!);
  }
  return dirs;
}

function sigkill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new SystemError(`cannot kill process ${pid}: ${(err as Error).message}`, err);
  }
}

/** Drop absent counters so callers (and JSON output) see only what the kernel offered. */
function compact(usage: CgroupUsage): CgroupUsage {
  return Object.fromEntries(Object.entries(usage).filter(([, v]) => v !== undefined)) as CgroupUsage;
}
