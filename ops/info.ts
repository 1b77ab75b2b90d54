import fs = require('node:fs');
import type { CgroupUsage } from '../runtime/cgroups';
import { ContainerConfig, isPrivileged } from '../runtime/config';
import { Container } from '../runtime/container';
import { Root } from '../lib/root';
import { ContainerState, ExitInfo, Status } from '../runtime/state';

export interface ContainerInfo {
  name: string;
  /** 'frozen': running, with every process stopped by the freezer cgroup. */
  state: Status | 'frozen';
  initPid?: number;
  ip?: string;
  createdAt: string;
  startedAt?: string;
  pool: string;
  template: string;
  exit?: ExitInfo;
  /** The checkpoint that stopped it: `tsvz restore` continues from there. */
  checkpoint?: string;
  /** A source a migration left stopped (--keep-source): the host its copy runs on, and since when. */
  migratedTo?: { host: string; at: string };
  cgroup?: CgroupUsage;
  /** Host ids of root inside, or 'privileged' when it is the host's root. */
  security: { privileged: true; warning: string } | { privileged: false; uid: number; gid: number; size: number; shared: boolean; rootfs: 'idmapped' | 'shifted' };
  config: ContainerConfig;
}

/** What info and doctor say of a container without a user namespace. */
/** How a container runs: privileged (with the warning), or in its user namespace with its id range. */
export function securityOf(cfg: ContainerConfig): ContainerInfo['security'] {
  return isPrivileged(cfg)
    ? { privileged: true, warning: privilegedWarning(cfg) }
    : { privileged: false, uid: cfg.idmap!.uid, gid: cfg.idmap!.gid, size: cfg.idmap!.size, shared: cfg.idmap!.shared === true, rootfs: cfg.idmap!.rootfs };
}

export function privilegedWarning(cfg: ContainerConfig): string {
  return cfg.privileged
    ? 'privileged: no user namespace, root inside is root on the host (made with --privileged)'
    : 'privileged: no user namespace, root inside is root on the host (made before user namespaces were the default)';
}

/** Everything `tsvz info` shows; `withUsage` reads the cgroup counters (running containers only). */
export function containerInfo(c: Container, withUsage = true): ContainerInfo {
  const state: ContainerState = c.state();
  const cfg = c.config;
  const info: ContainerInfo = {
    name: c.name,
    state: state.status === 'running' && isFrozen(c) ? 'frozen' : state.status,
    initPid: state.status === 'running' ? state.initPid : undefined,
    ip: cfg.net.mode === 'bridge' ? cfg.net.address.split('/')[0] : undefined,
    createdAt: cfg.createdAt,
    startedAt: state.startedAt,
    pool: cfg.pool,
    template: cfg.template,
    exit: state.status === 'stopped' && !state.checkpoint ? state.exit : undefined,
    checkpoint: state.status === 'stopped' ? state.checkpoint : undefined,
    migratedTo: state.status === 'stopped' && state.migratedTo ? { host: state.migratedTo.host, at: state.migratedTo.at } : undefined,
    security: securityOf(cfg),
    config: cfg,
  };
  if (withUsage && state.status === 'running') info.cgroup = c.cgroups().usage();
  return info;
}

/** Every container under the root, sorted by name (half-created ones are not listed). */
export function listContainers(root: Root): ContainerInfo[] {
  let names: string[];
  try { names = fs.readdirSync(root.containersDir); } catch { return []; }
  return names
    .filter((n) => !n.startsWith('.'))
    .sort()
    .map((n) => new Container(root, n))
    .filter((c) => c.exists())
    .map((c) => containerInfo(c, false));
}

function isFrozen(c: Container): boolean {
  // Loaded on demand: only a running container can be frozen.
  const freezer = require('../runtime/cgroups/freezer') as typeof import('../runtime/cgroups/freezer');
  return freezer.isFrozen(c.cgroups());
}
