import fs = require('node:fs');
import path = require('node:path');
import type { ContainerCgroups } from './';
import { readText, writeControl } from './files';
import { addCleanupFailures, NotSupportedError, TimeoutError } from '../../lib/errors';
import { pollUntil } from '../../lib/poll';

/**
 * The cgroup freezer: stop every process of a container where it stands
 * (for checkpoint, snapshots, `tsvz freeze`), and let it go again.
 *
 *   v1: <freezer>/tsvz/<leaf>/freezer.state   write FROZEN / THAWED; reads FREEZING meanwhile
 *   v2: <unified>/tsvz/<leaf>/cgroup.freeze   write 1 / 0; cgroup.events says "frozen 1" once done
 *
 * On a hybrid host a container is in both, and the two freezers are
 * independent: we freeze with one, and thaw() thaws both, so no path ever
 * leaves a container frozen behind the other's back.
 */
export type FreezerKind = 'v1' | 'v2';

export interface Freezer {
  kind: FreezerKind;
  /** The cgroup directory holding the control file. */
  path: string;
  /** The container's cgroup dir in the other hierarchy (hybrid hosts): thawed too. */
  sibling?: string;
}

const DEFAULT_TIMEOUT_MS = 5000;
const THAW_TIMEOUT_MS = 5000;
/** Poll backoff: 1 ms, doubling, at most this. */
const MAX_POLL_MS = 8;

const V1_FILE = 'freezer.state';
const V2_FILE = 'cgroup.freeze';

function hasV1(dir: string | undefined): dir is string {
  return dir !== undefined && fs.existsSync(path.join(dir, V1_FILE));
}

function hasV2(dir: string | undefined): dir is string {
  return dir !== undefined && fs.existsSync(path.join(dir, V2_FILE));
}

/** Which freezer to use: v2 when the container has cgroup.freeze, else v1; `prefer` forces one. */
export function freezerFor(cg: ContainerCgroups, prefer?: FreezerKind): Freezer {
  const v1 = cg.freezerPath();
  const v2 = cg.unifiedPath();
  const kind = prefer ?? (hasV2(v2) ? 'v2' : 'v1');
  if (kind === 'v2' && hasV2(v2)) return { kind, path: v2, ...(hasV1(v1) ? { sibling: v1 } : {}) };
  if (kind === 'v1' && hasV1(v1)) return { kind, path: v1, ...(hasV2(v2) ? { sibling: v2 } : {}) };
  const what = kind === 'v2' ? `cgroup v2 freezer (${V2_FILE})` : `cgroup v1 freezer (${V1_FILE})`;
  const hint = prefer
    ? `this host or container has no ${what}; try without --${prefer}`
    : 'mount the v1 freezer controller or use cgroup v2 (Linux 5.2+)';
  throw new NotSupportedError(prefer ? `no ${what} for this container` : 'no cgroup freezer for this container', hint);
}

/** What the kernel reports now: frozen, or not (yet). */
function reportsFrozen(kind: FreezerKind, dir: string): boolean {
  if (kind === 'v1') return readText(path.join(dir, V1_FILE))?.trim() === 'FROZEN';
  return /^frozen 1$/m.test(readText(path.join(dir, 'cgroup.events')) ?? '');
}

function reportsThawed(kind: FreezerKind, dir: string): boolean {
  if (kind === 'v1') return readText(path.join(dir, V1_FILE))?.trim() === 'THAWED';
  return !/^frozen 1$/m.test(readText(path.join(dir, 'cgroup.events')) ?? '');
}

function request(kind: FreezerKind, dir: string, frozen: boolean): void {
  const [file, value] = kind === 'v1' ? [V1_FILE, frozen ? 'FROZEN' : 'THAWED'] : [V2_FILE, frozen ? '1' : '0'];
  writeControl(path.join(dir, file), value, `${frozen ? 'freeze' : 'thaw'} the container`);
}

/** Poll `cond` with a short doubling backoff; false once `timeoutMs` passed. */
function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  return pollUntil(cond, { timeoutMs, firstMs: 1, factor: 2, maxMs: MAX_POLL_MS });
}

/**
 * Freeze and wait until the kernel reports the whole cgroup frozen. Returns
 * the time it took in ms. On timeout, thaws and throws code ETIMEDOUT.
 */
export async function freeze(f: Freezer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
  const t0 = performance.now();
  request(f.kind, f.path, true);
  // Most trees are frozen by the time the write returns: no timer round trip then.
  if (reportsFrozen(f.kind, f.path) || (await waitFor(() => reportsFrozen(f.kind, f.path), timeoutMs))) return performance.now() - t0;
  await thaw(f);
  throw new TimeoutError(`cgroup ${f.path} was not frozen after ${timeoutMs} ms; thawed it again`, 'a process may be stuck in uninterruptible sleep (state D in /proc/PID/stat)');
}

/** Thaw the freezer and its sibling (whichever froze it), and wait until both report thawed. */
export async function thaw(f: Freezer): Promise<void> {
  const dirs: [FreezerKind, string][] = [[f.kind, f.path]];
  if (f.sibling) dirs.push([f.kind === 'v1' ? 'v2' : 'v1', f.sibling]);
  for (const [kind, dir] of dirs) {
    request(kind, dir, false);
    if (!reportsThawed(kind, dir) && !(await waitFor(() => reportsThawed(kind, dir), THAW_TIMEOUT_MS))) {
      throw new TimeoutError(`cgroup ${dir} still frozen ${THAW_TIMEOUT_MS} ms after thawing it`);
    }
  }
}

/**
 * The freezer CRIU is told to use (freeze_cgroup): v1 where it is mounted,
 * v2 on pure-v2 hosts. Whoever freezes a container before CRIU runs must use
 * this one: CRIU checks only it, and seizing tasks another freezer holds
 * would wait forever.
 */
export function criuFreezer(cg: ContainerCgroups): Freezer {
  return hasV1(cg.freezerPath()) ? freezerFor(cg, 'v1') : freezerFor(cg, 'v2');
}

/**
 * Hand a frozen container over to freezer `f`: freeze with it, then release
 * the other one. The processes never run in between.
 */
export async function moveFreezeTo(f: Freezer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  await freeze(f, timeoutMs);
  if (!f.sibling) return;
  const other: FreezerKind = f.kind === 'v1' ? 'v2' : 'v1';
  request(other, f.sibling, false);
  if (!reportsThawed(other, f.sibling) && !(await waitFor(() => reportsThawed(other, f.sibling!), THAW_TIMEOUT_MS))) {
    throw new TimeoutError(`cgroup ${f.sibling} still frozen ${THAW_TIMEOUT_MS} ms after thawing it`);
  }
}

/** Thaw whatever freezer this container has (none is fine): for stop and kill. */
export async function thawAll(cg: ContainerCgroups): Promise<void> {
  const v1 = cg.freezerPath();
  const v2 = cg.unifiedPath();
  if (hasV1(v1)) await thaw({ kind: 'v1', path: v1, ...(hasV2(v2) ? { sibling: v2 } : {}) });
  else if (hasV2(v2)) await thaw({ kind: 'v2', path: v2 });
}

/**
 * True if either freezer holds the container: frozen, or asked to freeze and
 * not done yet (v1 FREEZING, v2 cgroup.freeze 1) — its processes don't run.
 */
export function isFrozen(cg: ContainerCgroups): boolean {
  const v1 = cg.freezerPath();
  const v2 = cg.unifiedPath();
  if (hasV1(v1) && (readText(path.join(v1, V1_FILE))?.trim() ?? 'THAWED') !== 'THAWED') return true;
  if (hasV2(v2) && (readText(path.join(v2, V2_FILE))?.trim() === '1' || reportsFrozen('v2', v2))) return true;
  return false;
}

/** Run body with the container frozen; always thaws afterwards, even when body throws. */
export async function withFrozen<T>(f: Freezer, body: () => Promise<T>, timeoutMs?: number): Promise<T> {
  await freeze(f, timeoutMs);
  let result: T;
  try {
    result = await body();
  } catch (err) {
    try {
      await thaw(f);
    } catch (thawErr) {
      addCleanupFailures(err, [`thaw: ${(thawErr as Error).message}`]);
    }
    throw err;
  }
  await thaw(f);
  return result;
}
