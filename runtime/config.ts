import type { CgroupLimits } from './cgroups';

export type NetConfig =
  | { mode: 'none' }
  | { mode: 'bridge'; bridge: string; address: string; gateway: string };

/** What a container is: written once at create (atomically), read by every command. */
export interface ContainerConfig {
  version: 1;
  name: string;
  hostname: string;
  template: string;
  /** init's argv; argv[0] is looked up on the container's PATH. */
  init: string[];
  /** Signal `tsvz stop` sends to init before SIGKILL. */
  stopSignal: string;
  env: string[];
  limits: CgroupLimits;
  net: NetConfig;
  /** Storage pool holding the rootfs ('default': a plain directory, ROOT/containers/NAME/rootfs). */
  pool: string;
  createdAt: string;
  /** Set on a clone: what it was made from (its snapshot can't be removed while the clone exists). */
  origin?: { container: string; snapshot?: string };
  /**
   * The container's user namespace (see runtime/idmap.ts). Absent: a
   * privileged container, root inside is root outside (`--privileged`, and
   * every container made before user namespaces were the default).
   */
  idmap?: IdMapConfig;
  /** Made with --privileged (an explicit choice, warned about by info and doctor). */
  privileged?: boolean;
  /** Syscalls the seccomp filter denies by default that this container may use (runtime/seccomp.ts). */
  allowSyscalls?: string[];
}

/** Root inside the container is host uid `uid`, gid `gid`; `size` ids from there are mapped. */
export interface IdMapConfig {
  uid: number;
  gid: number;
  size: number;
  /** The range is shared with every other container made with --shared-idmap (else it is this container's alone). */
  shared?: boolean;
  /**
   * How the rootfs is owned by the range: on disk it stays owned by 0..size
   * and is mounted through an idmapped mount, or it was shifted once
   * (chowned into the range) where the filesystem has no idmapped mounts.
   */
  rootfs: 'idmapped' | 'shifted';
}

/** A container without a user namespace: root inside is root on the host. */
export function isPrivileged(cfg: ContainerConfig): boolean {
  return cfg.idmap === undefined;
}

export const DEFAULT_ENV = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'TERM=linux',
  'container=tsvz',
];

