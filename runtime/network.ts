import { createHash } from 'node:crypto';
import fs = require('node:fs');
import os = require('node:os');
import { addCleanupFailures, CommandError, InvalidArgumentError, InvalidStateError, NotFoundError, NotSupportedError } from '../lib/errors';
import { findCommand, run } from '../lib/process';

/**
 * `--net bridge`: each container gets a veth pair whose host end is a port of
 * a host bridge (which holds the gateway address) and whose other end is the
 * container's eth0. Nothing else is configured: no NAT, no forwarding, so
 * containers reach each other and the host's bridge address only.
 *
 * All of it is done with iproute2 (`ip`) and util-linux (`nsenter`).
 */

export interface BridgeNetConfig {
  /** Host bridge name, default "tsvzbr0". */
  bridge: string;
  /** Container address in CIDR form, e.g. "198.18.0.10/15". */
  address: string;
  /** Bridge (gateway) address; default: the first host of the subnet, e.g. 198.18.0.1. */
  gateway?: string;
}

export const DEFAULT_BRIDGE = 'tsvzbr0';
/** Name of the container's interface. */
export const CONTAINER_IFNAME = 'eth0';
/** Linux interface names are at most IFNAMSIZ-1 = 15 bytes. */
const MAX_IFNAME = 15;
const SYS_NET = '/sys/class/net';

// ---------------------------------------------------------------- addresses

/**
 * Validate "A.B.C.D/N": a proper IPv4 address, prefix 8..30, not the network
 * or broadcast address, not equal to the gateway. Throws InvalidArgumentError
 * with a one-line message. Returns normalised {address, prefix, gateway}.
 */
export function parseContainerAddress(cidr: string, gateway?: string): { address: string; prefix: number; gateway: string } {
  const shown = JSON.stringify(String(cidr));
  const m = typeof cidr === 'string' ? /^([^/]+)\/(\d+)$/.exec(cidr) : null;
  if (!m) throw new InvalidArgumentError(`container address ${shown} is not of the form A.B.C.D/N`, 'e.g. 198.18.0.10/15');
  const ip = parseIPv4(m[1]);
  if (ip === undefined) throw new InvalidArgumentError(`container address ${shown} is not a valid IPv4 address`);
  const prefix = Number(m[2]);
  if (m[2] !== String(prefix) || prefix < 8 || prefix > 30) {
    throw new InvalidArgumentError(`container address ${shown}: prefix /${m[2]} is out of range (8..30)`);
  }

  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ip & mask) >>> 0;
  const broadcast = (network | ~mask) >>> 0;
  const subnet = `${formatIPv4(network)}/${prefix}`;
  if (ip === network) throw new InvalidArgumentError(`container address ${shown} is the network address of ${subnet}`);
  if (ip === broadcast) throw new InvalidArgumentError(`container address ${shown} is the broadcast address of ${subnet}`);

  let gw = network + 1;
  if (gateway !== undefined) {
    const parsed = parseIPv4(gateway);
    if (parsed === undefined) throw new InvalidArgumentError(`gateway ${JSON.stringify(String(gateway))} is not a valid IPv4 address`);
    if (((parsed & mask) >>> 0) !== network) throw new InvalidArgumentError(`gateway ${gateway} is outside ${subnet}`);
    if (parsed === network || parsed === broadcast) {
      throw new InvalidArgumentError(`gateway ${gateway} is the ${parsed === network ? 'network' : 'broadcast'} address of ${subnet}`);
    }
    gw = parsed;
  }
  if (ip === gw) throw new InvalidArgumentError(`container address ${shown} equals the gateway ${formatIPv4(gw)}`, 'pick another address');
  return { address: formatIPv4(ip), prefix, gateway: formatIPv4(gw) };
}

/** Dotted quad to a 32-bit unsigned number; undefined unless exactly four decimal octets 0..255 without leading zeros. */
function parseIPv4(s: string): number | undefined {
  if (typeof s !== 'string') return undefined;
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

// ---------------------------------------------------------------- names

/**
 * The container's eth0 MAC: derived from its key, so it is the same after a
 * restart (or a restore) and neighbours' ARP caches stay right. Locally
 * administered, unicast (02:...).
 */
export function containerMac(key: string): string {
  const h = createHash('sha1').update(`mac:${key}`).digest();
  return ['02', ...Array.from(h.subarray(0, 5), (b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * The ifindex of a container's eth0, in [2^30, 2^30 + 2^29): one the host's
 * own links do not reach (the kernel numbers them from 1 up, per
 * namespace). CRIU 4.2.1 restores a user-namespaced container's veth from
 * the host's namespace (through its usernsd) and looks the link's old
 * ifindex up there first: an index the host also has names a host device,
 * which CRIU then tries to change instead (EOPNOTSUPP, "-95 reported by
 * netlink"). With this index there is none to find, and CRIU creates it.
 */
export function containerIfindex(key: string): number {
  return 2 ** 30 + (createHash('sha1').update(`ifindex:${key}`).digest().readUInt32BE(0) % 2 ** 29);
}

/**
 * Name of the host-side veth for a container: "tsvz" + 8 hex chars of
 * sha1(key), 12 chars (IFNAMSIZ allows 15). `key` is unique per container.
 */
export function hostVethName(key: string): string {
  return 'tsvz' + createHash('sha1').update(key).digest('hex').slice(0, 8);
}

/** Interface names go into `ip -batch` lines: no whitespace, nothing `ip` could read as an option. */
function validateIfName(name: string, what: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) || name.length > MAX_IFNAME) {
    throw new InvalidArgumentError(
      `${what} name ${JSON.stringify(String(name))} is invalid`,
      `use up to ${MAX_IFNAME} letters, digits, "_", "." or "-"`,
    );
  }
  return name;
}

/** A bridge name, checked where it is first given (create), not only where it is used. */
export function validateBridgeName(name: string): string {
  return validateIfName(name, 'bridge');
}

function bridgeName(cfg: BridgeNetConfig): string {
  return validateIfName(cfg.bridge || DEFAULT_BRIDGE, 'bridge');
}

// ---------------------------------------------------------------- host state

function linkExists(name: string): boolean {
  return fs.existsSync(`${SYS_NET}/${name}`);
}

/** An existing interface of that name that is not a bridge must never be touched. */
function assertIsBridge(name: string): void {
  if (!isBridge(name)) {
    throw new InvalidArgumentError(`host interface "${name}" exists and is not a bridge`, 'pick another bridge name');
  }
}

/**
 * A bridge's uevent says DEVTYPE=bridge from the moment the link exists;
 * its bridge/ attribute directory appears a moment later, so a caller
 * racing another's `ip link add` could see a bridge without it.
 */
function isBridge(name: string): boolean {
  try {
    return /^DEVTYPE=bridge$/m.test(fs.readFileSync(`${SYS_NET}/${name}/uevent`, 'utf8'));
  } catch {
    return false;
  }
}

/** Is the bridge up and already holding gateway/prefix? (os.networkInterfaces() costs no process spawn.) */
function bridgeReady(bridge: string, gateway: string, prefix: number): boolean {
  return (os.networkInterfaces()[bridge] ?? []).some((a) => a.family === 'IPv4' && a.cidr === `${gateway}/${prefix}`);
}

let toolsChecked = false;
function requireTools(): void {
  if (toolsChecked) return;
  if (!findCommand('ip')) throw new NotSupportedError('the "ip" command is missing', 'install iproute2');
  if (!findCommand('nsenter')) throw new NotSupportedError('the "nsenter" command is missing', 'install util-linux');
  toolsChecked = true;
}

/**
 * Run `[...prefix, ip, -batch, -]` with one ip command per line. ip stops at
 * the first failing line; the error names that line rather than ip's
 * unhelpful "Command failed -:N".
 */
async function ipBatch(prefix: string[], lines: string[]): Promise<void> {
  const [cmd, ...args] = [...prefix, 'ip', '-batch', '-'];
  const r = await run(cmd, args, { input: lines.join('\n') + '\n', allowFail: true });
  if (r.status === 0) return;
  const lineNo = /Command failed -:(\d+)/.exec(r.stderr)?.[1];
  const failed = lineNo ? lines[Number(lineNo) - 1] : undefined;
  const stderr = r.stderr.split('\n').filter((l) => !l.startsWith('Command failed')).join('\n');
  throw new CommandError([...prefix, 'ip', failed ?? '-batch -'].join(' '), r.status, stderr);
}

// ---------------------------------------------------------------- operations

/**
 * Create the bridge if missing (with the gateway address, up). Idempotent and
 * safe when several callers race: "File exists" from another one is fine.
 * Costs no process spawn when the bridge is already configured. A bridge
 * that exists with another subnet gets this gateway address in addition.
 */
export async function ensureBridge(cfg: BridgeNetConfig): Promise<void> {
  const bridge = bridgeName(cfg);
  const { prefix, gateway } = parseContainerAddress(cfg.address, cfg.gateway);
  requireTools();
  if (!linkExists(bridge)) {
    const r = await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge'], { allowFail: true });
    if (r.status !== 0 && !/File exists/.test(r.stderr)) {
      throw new CommandError(`ip link add name ${bridge} type bridge`, r.status, r.stderr);
    }
  }
  assertIsBridge(bridge);
  if (bridgeReady(bridge, gateway, prefix)) return;
  // `replace` instead of `add`: no "File exists" when a concurrent caller got there first.
  await ipBatch([], [`addr replace ${gateway}/${prefix} brd + dev ${bridge}`, `link set dev ${bridge} up`]);
}

/**
 * Wire a running container's netns (given the host pid of its init) to the
 * bridge. Two process spawns: on the host, one `ip link add` creates the veth
 * pair with the host end up on the bridge and the peer created directly as
 * eth0 in the container's netns; inside, one `nsenter ... ip -batch -` sets
 * the address, link state and default route. On failure the host veth (and
 * with it the peer) is deleted again and the error rethrown.
 * The bridge must exist (ensureBridge).
 */
export async function connectContainer(pid: number, key: string, cfg: BridgeNetConfig): Promise<void> {
  const bridge = bridgeName(cfg);
  const { address, prefix, gateway } = parseContainerAddress(cfg.address, cfg.gateway);
  if (!Number.isInteger(pid) || pid <= 0) throw new InvalidArgumentError(`invalid pid ${pid}`);
  requireTools();
  assertOwnNetns(pid);
  if (!linkExists(bridge)) throw new NotFoundError(`bridge "${bridge}" does not exist`);
  const veth = hostVethName(key);
  const eth = CONTAINER_IFNAME;
  // A veth of that name is another connection's: a failure here must not take it down.
  const ownsVeth = !linkExists(veth);

  try {
    // The container's end is made in its namespace with an index of its own (see containerIfindex), the host's end as its peer.
    await ipBatch([], [
      `link add name ${eth} index ${containerIfindex(key)} address ${containerMac(key)} netns ${pid} type veth peer name ${veth}`,
      `link set dev ${veth} master ${bridge} up`,
    ]);
    await ipBatch(['nsenter', '-t', String(pid), '-n'], [
      'link set dev lo up',
      `addr add ${address}/${prefix} brd + dev ${eth}`,
      `link set dev ${eth} up`,
      `route add default via ${gateway} dev ${eth}`,
    ]);
  } catch (err) {
    try {
      if (ownsVeth) await deleteLink(veth);
    } catch (cleanupErr) {
      addCleanupFailures(err, [`delete ${veth}: ${(cleanupErr as Error).message}`]);
    }
    throw err;
  }
}

/** Refuse a pid that is gone or still shares our network namespace (it would get its eth0 on the host). */
function assertOwnNetns(pid: number): void {
  let theirs: string;
  try {
    theirs = fs.readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    throw new NotFoundError(`process ${pid} does not exist`);
  }
  if (theirs === fs.readlinkSync('/proc/self/ns/net')) {
    throw new InvalidStateError(`process ${pid} is in the host network namespace`, 'the container needs its own network namespace');
  }
}

/**
 * How CRIU re-creates a container's eth0 on restore: the host end named as
 * connectContainer names it, plugged into the container's bridge.
 */
export function criuExternalVeth(key: string, cfg: BridgeNetConfig): string {
  return `veth[${CONTAINER_IFNAME}]:${hostVethName(key)}@${bridgeName(cfg)}`;
}

/** Bring the host end of a container's veth up (CRIU creates it down). */
export async function hostVethUp(key: string): Promise<void> {
  await run('ip', ['link', 'set', 'dev', hostVethName(key), 'up']);
}

/**
 * Cut a running container off its bridge (post-copy's network lock), or
 * plug it back. Its link stays up: a dump of a link without carrier
 * records its routes "linkdown", which a restore cannot set.
 */
export async function unplugFromBridge(key: string): Promise<void> {
  await run('ip', ['link', 'set', 'dev', hostVethName(key), 'nomaster']);
}

export async function plugIntoBridge(key: string, cfg: BridgeNetConfig): Promise<void> {
  await run('ip', ['link', 'set', 'dev', hostVethName(key), 'master', bridgeName(cfg)]);
}

/**
 * Tell the segment that the container's address is behind this host's
 * port now: one gratuitous ARP (an unsolicited request for its own
 * address) from its eth0, so that switches move its MAC to this port and
 * peers refresh their caches at once instead of after a timeout (what
 * QEMU and Incus do after a migration). busybox's arping sends it.
 */
export async function announceAddress(pid: number, cfg: BridgeNetConfig): Promise<void> {
  const { address } = parseContainerAddress(cfg.address, cfg.gateway);
  if (!Number.isInteger(pid) || pid <= 0) throw new InvalidArgumentError(`invalid pid ${pid}`);
  requireTools();
  assertOwnNetns(pid);
  const busybox = findCommand('busybox');
  if (!busybox) throw new NotSupportedError('the "busybox" command is missing', 'install busybox-static');
  await run('nsenter', ['-t', String(pid), '-n', busybox, 'arping', '-U', '-q', '-c', '1', '-w', '1', '-I', CONTAINER_IFNAME, '-s', address, address]);
}

/**
 * Remove the host veth if it still exists (when the container's netns dies
 * the pair vanishes by itself; this is for cleanup after crashes). Idempotent.
 */
export async function disconnectContainer(key: string): Promise<void> {
  await deleteLink(hostVethName(key));
}

/** Remove the bridge if no interface is attached to it anymore. Idempotent. */
export async function removeBridgeIfUnused(bridge: string): Promise<void> {
  validateIfName(bridge, 'bridge');
  if (!linkExists(bridge)) return;
  assertIsBridge(bridge);
  let ports: string[];
  try {
    ports = fs.readdirSync(`${SYS_NET}/${bridge}/brif`);
  } catch {
    return; // vanished meanwhile
  }
  if (ports.length === 0) await deleteLink(bridge);
}

/** `ip link del` that treats "already gone" as success. */
async function deleteLink(name: string): Promise<void> {
  if (!linkExists(name)) return;
  const r = await run('ip', ['link', 'del', 'dev', name], { allowFail: true });
  if (r.status !== 0 && linkExists(name)) throw new CommandError(`ip link del dev ${name}`, r.status, r.stderr);
}
