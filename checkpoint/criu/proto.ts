import type { StaticMessage } from '../static-message';

/*
 * TypeScript views of the messages. protobufjs turns the .proto's snake_case
 * field names into camelCase, so these names are the wire fields' names.
 */

export type ReqType =
  | 'EMPTY' | 'DUMP' | 'RESTORE' | 'CHECK' | 'PRE_DUMP' | 'PAGE_SERVER' | 'NOTIFY'
  | 'CPUINFO_DUMP' | 'CPUINFO_CHECK' | 'FEATURE_CHECK' | 'VERSION' | 'WAIT_PID'
  | 'PAGE_SERVER_CHLD' | 'SINGLE_PRE_DUMP';

export type CgroupMode = 'IGNORE' | 'CG_NONE' | 'PROPS' | 'SOFT' | 'FULL' | 'STRICT' | 'DEFAULT';
export type NetworkLockMethod = 'IPTABLES' | 'NFTABLES' | 'SKIP';

export interface PageServerInfo {
  address?: string;
  port?: number;
  pid?: number;
  fd?: number;
}

/** criu_opts. Paths and fds are seen from the process that talks to CRIU. */
export interface CriuOpts {
  /** Directory fd, kept open by the caller for the whole call (CRIU opens /proc/<caller>/fd/N). */
  imagesDirFd: number;
  /** Where the log goes (default: the images dir). */
  workDirFd?: number;
  /** A file name inside the work dir, no '/'. */
  logFile?: string;
  /** 0 (none) .. 4 (debug). */
  logLevel?: number;
  pid?: number;
  root?: string;
  leaveRunning?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
  linkRemap?: boolean;
  tcpEstablished?: boolean;
  tcpSkipInFlight?: boolean;
  tcpClose?: boolean;
  orphanPtsMaster?: boolean;
  notifyScripts?: boolean;
  rstSibling?: boolean;
  manageCgroups?: boolean;
  manageCgroupsMode?: CgroupMode;
  cgRoot?: { ctrl?: string; path: string }[];
  freezeCgroup?: string;
  /** A directory with every cgroup hierarchy mounted (or linked) under CRIU's names for them, so CRIU mounts none. */
  cgroupYard?: string;
  /** e.g. `net[<inode>]:name`, `mnt[/path]:name`. */
  external?: string[];
  /** On restore: CRIU installs `fd` where the image recorded the external resource `key`. */
  inheritFd?: { key: string; fd: number }[];
  networkLock?: NetworkLockMethod;
  ps?: PageServerInfo;
  trackMem?: boolean;
  /** Relative to the images dir, e.g. `../pre1`. */
  parentImg?: string;
  autoDedup?: boolean;
  lazyPages?: boolean;
  statusFd?: number;
  /** Namespaces (CLONE_* bits) CRIU creates empty on restore instead of dumping their contents. */
  emptyNs?: number;
  /** A CRIU configuration file (CLI option names) whose settings override these. */
  configFile?: string;
}

export interface CriuFeatures {
  memTrack?: boolean;
  lazyPages?: boolean;
  pidfdStore?: boolean;
}

export interface CriuRequest {
  type: ReqType;
  opts?: CriuOpts;
  notifySuccess?: boolean;
  keepOpen?: boolean;
  features?: CriuFeatures;
  pid?: number;
}

export interface CriuVersionInfo {
  majorNumber: number;
  minorNumber: number;
  gitid?: string;
  sublevel?: number;
  extra?: number;
  name?: string;
}

export interface CriuResponse {
  type: ReqType;
  success: boolean;
  dump?: { restored?: boolean };
  restore?: { pid: number };
  notify?: { script?: string; pid?: number };
  ps?: PageServerInfo;
  crErrno?: number;
  features?: CriuFeatures;
  crErrmsg?: string;
  version?: CriuVersionInfo;
  status?: number;
}

/*
 * Encoders and decoders generated from proto/criu-rpc.proto at build time
 * (scripts/build, pbjs static-module): no parsing or code generation when a
 * checkpoint runs. Loaded on first use; a long-running process loads them at
 * start (the module's compilation would otherwise fall into its first dump).
 */
let messages: { req: StaticMessage; resp: StaticMessage } | undefined;

export function loadCriuMessages(): { req: StaticMessage; resp: StaticMessage } {
  if (!messages) {
    const root = require('../../proto/criu-rpc') as Record<string, StaticMessage>;
    messages = { req: root.criu_req, resp: root.criu_resp };
  }
  return messages;
}

export function encodeRequest(req: CriuRequest): Buffer {
  const { req: type } = loadCriuMessages();
  return Buffer.from(type.encode(type.fromObject(req)).finish());
}

/** Throws protobufjs's error when a required field is missing or the bytes are not a criu_resp. */
export function decodeResponse(data: Uint8Array): CriuResponse {
  const { resp: type } = loadCriuMessages();
  return type.toObject(type.decode(data), { enums: String }) as CriuResponse;
}
