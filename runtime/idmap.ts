import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists } from '../lib/atomic-file';
import { InvalidArgumentError, LimitError, NotSupportedError } from '../lib/errors';
import { withLock } from '../lib/lock';
import type { Root } from '../lib/root';
import type { ContainerConfig, IdMapConfig } from './config';

/**
 * User namespace id ranges. The host gives tsvz a range of subordinate ids
 * in /etc/subuid and /etc/subgid for its user `tsvz` (scripts/setup-host
 * makes both), as LXC and Incus use root's. The range is cut in slots of
 * IDMAP_SIZE ids: slot 0 is shared by every container made with
 * --shared-idmap, every other container gets a slot of its own (Incus's
 * security.idmap.isolated), recorded in its config, so root in one
 * container is no user of another's. Slots are unique per tsvz root (one
 * root per host: tests using several roots on one machine may reuse them).
 */

export const IDMAP_USER = 'tsvz';
/** Ids per container: uid/gid 0..65535 inside, what a distribution uses. */
export const IDMAP_SIZE = 65536;
const SUBUID = '/etc/subuid';
const SUBGID = '/etc/subgid';

export interface SubordinateRange {
  start: number;
  count: number;
}

/** The first range of `user` (by name or uid) in a subuid/subgid file's text. */
export function parseSubordinate(text: string, user: string, uid?: number): SubordinateRange | undefined {
  for (const line of text.split('\n')) {
    const m = /^([^:#\s]+):(\d+):(\d+)\s*$/.exec(line.trim());
    if (!m || (m[1] !== user && (uid === undefined || m[1] !== String(uid)))) continue;
    const start = Number(m[2]);
    const count = Number(m[3]);
    if (Number.isSafeInteger(start) && Number.isSafeInteger(count) && count > 0 && start + count <= 2 ** 32) return { start, count };
  }
  return undefined;
}

function userId(user: string): number | undefined {
  try {
    const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
    const uid = line?.split(':')[2];
    return uid === undefined ? undefined : Number(uid);
  } catch {
    return undefined;
  }
}

/** This host's ranges for tsvz, or a NotSupportedError saying how to get them. */
export function hostRanges(files = { subuid: SUBUID, subgid: SUBGID }): { uid: SubordinateRange; gid: SubordinateRange } {
  const uid = userId(IDMAP_USER);
  const read = (file: string) => {
    try { return parseSubordinate(fs.readFileSync(file, 'utf8'), IDMAP_USER, uid); } catch { return undefined; }
  };
  const u = read(files.subuid);
  const g = read(files.subgid);
  if (!u || !g) {
    throw new NotSupportedError(
      `no subordinate ids for user ${IDMAP_USER} in ${!u ? files.subuid : files.subgid}: containers cannot have a user namespace`,
      'run scripts/setup-host (it adds them), or create the container with --privileged',
    );
  }
  if (Math.min(u.count, g.count) < 2 * IDMAP_SIZE) {
    throw new NotSupportedError(`the subordinate ids of ${IDMAP_USER} hold fewer than ${2 * IDMAP_SIZE} ids`, `give ${IDMAP_USER} a larger range in ${SUBUID} and ${SUBGID}`);
  }
  return { uid: u, gid: g };
}

function slots(r: { uid: SubordinateRange; gid: SubordinateRange }): number {
  return Math.floor(Math.min(r.uid.count, r.gid.count) / IDMAP_SIZE);
}

/** The map of slot `n`. */
export function slotMap(r: { uid: SubordinateRange; gid: SubordinateRange }, n: number, rootfs: IdMapConfig['rootfs']): IdMapConfig {
  return { uid: r.uid.start + n * IDMAP_SIZE, gid: r.gid.start + n * IDMAP_SIZE, size: IDMAP_SIZE, ...(n === 0 ? { shared: true } : {}), rootfs };
}

/** Slots taken by the containers of `root`, those being made included (their config is written first). */
function usedSlots(root: Root, r: { uid: SubordinateRange; gid: SubordinateRange }): Set<number> {
  const used = new Set<number>();
  let names: string[];
  try { names = fs.readdirSync(root.containersDir); } catch { return used; }
  for (const n of names) {
    const cfg = readJsonIfExists<ContainerConfig>(path.join(root.containersDir, n, 'config.json'));
    const uid = cfg?.idmap?.uid;
    if (typeof uid === 'number' && uid >= r.uid.start) used.add(Math.floor((uid - r.uid.start) / IDMAP_SIZE));
  }
  return used;
}

/**
 * Choose the id map of a new container and run `record` (which writes its
 * config) before another create can choose: the lock is the root's, held
 * for the choice and the write only.
 */
export async function withNewIdMap<T>(root: Root, opts: { shared: boolean; rootfs: IdMapConfig['rootfs'] }, record: (map: IdMapConfig) => Promise<T>): Promise<T> {
  const ranges = hostRanges();
  if (opts.shared) return record(slotMap(ranges, 0, opts.rootfs));
  return withLock(path.join(root.locksDir, '.idmap.lock'), 'the id map allocation', 10_000, async () => {
    const used = usedSlots(root, ranges);
    for (let n = 1; n < slots(ranges); n++) {
      if (!used.has(n)) return record(slotMap(ranges, n, opts.rootfs));
    }
    throw new LimitError(`every one of the ${slots(ranges) - 1} id ranges of ${IDMAP_USER}'s subordinate ids is taken`, `give ${IDMAP_USER} a larger range in ${SUBUID} and ${SUBGID}, or use --shared-idmap`);
  });
}

/** Check a recorded map (a config from disk or from a peer) before it is used. */
export function validateIdMap(map: unknown): IdMapConfig {
  const m = map as IdMapConfig;
  const id = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 2 ** 32;
  if (typeof m !== 'object' || m === null || !id(m.uid) || !id(m.gid) || m.size !== IDMAP_SIZE || m.uid + m.size > 2 ** 32 || m.gid + m.size > 2 ** 32
      || (m.rootfs !== 'idmapped' && m.rootfs !== 'shifted') || (m.shared !== undefined && typeof m.shared !== 'boolean')) {
    throw new InvalidArgumentError('invalid id map in the container config');
  }
  return m;
}

/** The native helpers' arguments for the map. */
export function idMapArgs(map: IdMapConfig): string[] {
  return ['--uid-map', `0:${map.uid}:${map.size}`, '--gid-map', `0:${map.gid}:${map.size}`];
}

/** Same ranges (how the rootfs is owned aside). */
export function sameRange(a: IdMapConfig | undefined, b: IdMapConfig | undefined): boolean {
  return a?.uid === b?.uid && a?.gid === b?.gid && a?.size === b?.size;
}
