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
}

export const DEFAULT_ENV = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'TERM=linux',
  'container=tsvz',
];

/** Capabilities removed from the bounding set of every container process (as LXC does). */
export const DROPPED_CAPABILITIES: Record<string, number> = {
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_TIME: 25,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYS_RESOURCE: 24, // not in these machines' bounding set anyway
};
