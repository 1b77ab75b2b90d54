import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { writeJsonAtomic } from '../lib/atomic-file';
import { mergeEnv } from '../lib/env';
import { AlreadyExistsError, InvalidArgumentError } from '../lib/errors';
import { faultPoint } from '../lib/fault';
import { validateName } from '../lib/names';
import { SIGNALS } from '../lib/proc';
import type { Root } from '../lib/root';
import { UndoStack, withUndo } from '../lib/undo';
import type { CgroupLimits } from '../runtime/cgroups';
import { validateLimits } from '../runtime/cgroups/limits';
import { ContainerConfig, DEFAULT_ENV, NetConfig } from '../runtime/config';
import { Container } from '../runtime/container';
import { ContainerPaths } from '../runtime/paths';
import { writeState } from '../runtime/state';
import { resolveTemplate } from '../runtime/templates';
import { hostRanges, withNewIdMap } from '../runtime/idmap';
import { OwnerBase, rootfsOwnership, shiftOwnership } from '../runtime/rootfs-owner';
import { validateAllowSyscalls } from '../runtime/seccomp';
import { DEFAULT_POOL, RootfsStore, withStore } from '../storage';
import { creatingPrefix, removePartials } from './building';
import { lockContainer } from './recovery';

/** A network as asked for: the address is checked and the gateway derived by create. */
export type NetRequest = { mode: 'none' } | { mode: 'bridge'; address: string; bridge?: string; gateway?: string };

/**
 * What a new container should be: typed values, not command-line text (the
 * CLI parses sizes and command lines). Every field is still checked here,
 * as if a stranger sent it: the daemon passes on what a peer asked for.
 */
export interface ContainerSpec {
  /** busybox, debian or tar:FILE (see runtime/templates). */
  template: string;
  /** init's argv (default: the template's). */
  init?: string[];
  hostname?: string;
  limits?: CgroupLimits;
  net?: NetRequest;
  env?: string[];
  stopSignal?: string;
  /** Storage pool for the rootfs (default: "default", a directory under the root). */
  pool?: string;
  /** No user namespace: root inside is root on the host (today's containers; warned about by info and doctor). */
  privileged?: boolean;
  /** Use the id range shared by all such containers instead of one of its own. */
  sharedIdmap?: boolean;
  /** Syscalls the seccomp filter denies by default that this container may use (bpf, perf_event_open, keyctl, ...). */
  allowSyscalls?: string[];
}

/**
 * Fills a new container's rootfs instead of its template (a migration's
 * files): resolves with the ids its files are owned from (0 for a tree as
 * the container sees it; a shifted source's range otherwise).
 */
export type RootfsFill = (rootfs: string) => Promise<OwnerBase>;

/**
 * Makes a new container's rootfs from a stream its pool receives (a
 * migration's btrfs or zfs send) instead of an empty volume: returns the
 * rootfs's directory; `owner`: the ids its files are owned from.
 */
export interface RootfsReceive {
  receive: (store: RootfsStore, buildDir: string, undo: UndoStack) => Promise<string>;
  owner: OwnerBase;
}

/**
 * Create a container: its root filesystem from a template (in a volume of
 * its pool), its config and state. Built in a hidden directory and renamed
 * into place at the end, so a container is either fully created or absent
 * (a failure deletes the volume; a CLI killed half-way leaves a hidden
 * directory, and maybe a volume, that `destroy --force` removes). With
 * `fill`, the rootfs is what fill puts there instead of the template's.
 */
export async function createContainer(root: Root, name: string, spec: ContainerSpec, fill?: RootfsFill | RootfsReceive): Promise<ContainerConfig> {
  validateName(name);
  const env = validateEnv(spec.env ?? []);
  const hostname = validateHostname(spec.hostname ?? name);
  const stopSignal = validateSignal(spec.stopSignal);
  const limits = spec.limits ?? {};
  validateLimits(limits);
  const net = await resolveNet(spec.net ?? { mode: 'none' });
  const template = await resolveTemplate(spec.template);
  const init = spec.init === undefined ? template.defaults.init : validateInit(spec.init);
  const pool = validateName(spec.pool ?? DEFAULT_POOL, 'pool');
  const privileged = validateFlag(spec.privileged, 'privileged');
  const sharedIdmap = validateFlag(spec.sharedIdmap, 'sharedIdmap');
  if (privileged && sharedIdmap) throw new InvalidArgumentError('a privileged container has no user namespace to share a range with', 'drop --shared-idmap or --privileged');
  const allowSyscalls = validateAllowSyscalls(spec.allowSyscalls ?? []);
  // Refused before anything is made when the host has no range to give.
  if (!privileged) hostRanges();
  root.ensure();
  const c = new Container(root, name);

  return lockContainer(c, async () => {
    if (c.exists()) throw new AlreadyExistsError(`container ${name} already exists`);
    // A create of this name that was killed half-way: its build directory and volume go first.
    await removePartials(root, name);
    return withStore(root, pool, (store) => withUndo(async (undo) => {
      const building = path.join(root.containersDir, `${creatingPrefix(name)}${crypto.randomBytes(4).toString('hex')}`);
      fs.mkdirSync(building, { mode: 0o700 });
      undo.add('remove partial container', () => fs.rmSync(building, { recursive: true, force: true }));
      const paths = new ContainerPaths(building);
      const config: ContainerConfig = {
        version: 1,
        name,
        hostname,
        template: template.name,
        init,
        stopSignal: stopSignal ?? template.defaults.stopSignal,
        env: mergeEnv(DEFAULT_ENV, env),
        limits: { memoryBytes: limits.memoryBytes, cpus: limits.cpus, pids: limits.pids },
        net,
        pool,
        createdAt: new Date().toISOString(),
        ...(privileged ? { privileged: true } : {}),
        ...(allowSyscalls.length > 0 ? { allowSyscalls } : {}),
      };
      // Written first: it names the pool, so `destroy --force` of a half-created container finds its volume.
      await writeJsonAtomic(paths.config, config);
      const received = typeof fill === 'object' ? fill : undefined;
      const rootfs = received ? await received.receive(store, building, undo) : await store.createRootfs(name, building, undo);
      if (!privileged) {
        await withNewIdMap(root, { shared: sharedIdmap, rootfs: rootfsOwnership(rootfs) }, async (idmap) => {
          config.idmap = idmap;
          await writeJsonAtomic(paths.config, config);
        });
      }
      let from: OwnerBase = { uid: 0, gid: 0 };
      if (received) from = received.owner;
      else if (typeof fill === 'function') from = await fill(rootfs);
      else await template.populate(rootfs, { root, hostname });
      const to = config.idmap?.rootfs === 'shifted' ? config.idmap : { uid: 0, gid: 0 };
      if (from.uid !== to.uid || from.gid !== to.gid) await shiftOwnership(rootfs, from, to, config.idmap?.size ?? 65536);
      await faultPoint('create:populated');
      await writeState(paths, { status: 'created' });
      fs.renameSync(building, c.paths.dir);
      return config;
    }));
  });
}

/**
 * A create request like container config `src` (an archive's, a peer's, a
 * backup's), so create checks every value of it as if typed here. Its id
 * range is not carried: the new container gets one of this host's. A
 * `renamed` copy drops the hostname and the address, which are the
 * source's own.
 */
export function specLike(src: ContainerConfig, opts: { pool?: string; renamed?: boolean } = {}): ContainerSpec {
  const renamed = opts.renamed === true;
  return {
    template: src.template,
    init: src.init,
    hostname: renamed ? undefined : src.hostname,
    limits: { memoryBytes: src.limits.memoryBytes, cpus: src.limits.cpus, pids: src.limits.pids },
    net: src.net.mode === 'bridge' && !renamed ? { mode: 'bridge', address: src.net.address, bridge: src.net.bridge } : { mode: 'none' },
    env: src.env,
    stopSignal: src.stopSignal,
    pool: opts.pool,
    privileged: src.idmap === undefined,
    sharedIdmap: src.idmap?.shared === true,
    allowSyscalls: src.allowSyscalls,
  };
}

export async function resolveNet(net: NetRequest): Promise<NetConfig> {
  if (net.mode === 'none') return { mode: 'none' };
  if (net.mode !== 'bridge') throw new InvalidArgumentError(`unknown network mode ${JSON.stringify(String((net as { mode: unknown }).mode))}`, 'use none or bridge');
  const { parseContainerAddress, validateBridgeName, DEFAULT_BRIDGE } = await import('../runtime/network');
  const bridge = validateBridgeName(net.bridge ?? DEFAULT_BRIDGE);
  const parsed = parseContainerAddress(net.address, net.gateway);
  return { mode: 'bridge', bridge, address: `${parsed.address}/${parsed.prefix}`, gateway: parsed.gateway };
}

/** The native helpers take at most 256 list arguments; the defaults use a few. */
const MAX_ENV = 200;
const MAX_INIT_ARGS = 200;
/** Linux's limit for one argument (MAX_ARG_STRLEN). */
const MAX_ARG_BYTES = 128 * 1024;

function validateEnv(env: unknown): string[] {
  if (!Array.isArray(env)) throw new InvalidArgumentError('environment is not a list of NAME=value entries');
  if (env.length > MAX_ENV) throw new InvalidArgumentError(`too many environment entries (${env.length}, at most ${MAX_ENV})`);
  for (const e of env) {
    if (typeof e !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*=/.test(e) || e.includes('\0') || e.length > MAX_ARG_BYTES) {
      throw new InvalidArgumentError(`invalid environment entry ${JSON.stringify(String(e)).slice(0, 80)}`, 'use NAME=value');
    }
  }
  return env as string[];
}

function validateInit(init: unknown): string[] {
  if (!Array.isArray(init) || init.length === 0) throw new InvalidArgumentError('init is empty', "give init's command, e.g. --init /sbin/init");
  if (init.length > MAX_INIT_ARGS) throw new InvalidArgumentError(`init has too many arguments (${init.length}, at most ${MAX_INIT_ARGS})`);
  for (const a of init) {
    if (typeof a !== 'string' || a.includes('\0') || a.length > MAX_ARG_BYTES) throw new InvalidArgumentError('init has an invalid argument (not text, a NUL byte, or too long)');
  }
  if ((init[0] as string).length === 0) throw new InvalidArgumentError("init's command is empty");
  return init as string[];
}

export function validateHostname(hostname: unknown): string {
  if (typeof hostname !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})$/.test(hostname)) {
    throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(String(hostname)).slice(0, 80)}`, 'use up to 63 letters, digits and "-"');
  }
  return hostname;
}

function validateFlag(v: unknown, what: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`${what} is not true or false`);
  return v;
}

function validateSignal(signal: unknown): string | undefined {
  if (signal === undefined) return undefined;
  const upper = typeof signal === 'string' ? signal.toUpperCase() : '';
  if (!(upper in SIGNALS)) throw new InvalidArgumentError(`unknown signal ${JSON.stringify(String(signal)).slice(0, 40)}`);
  return upper;
}
