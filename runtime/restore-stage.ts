import fs = require('node:fs');
import path = require('node:path');
import { getSystemErrorName } from 'node:util';
import { SystemError } from '../lib/errors';
import { lazyLibc } from '../lib/koffi';
import { mountsUnder, unmountUnder } from '../lib/mounts';

/**
 * Where a restore puts what CRIU's restored tree must reach by path: the
 * container's /dev (restore-dev) and, for an idmapped rootfs, the rootfs
 * mounted through the container's id map (restore-root, CRIU's --root).
 * In a user namespace the tree does that as the container's root, which
 * may not walk the tsvz root's directories (only host root may), so the
 * stage lives outside it, in a directory of its own owned by that root.
 * Everything in it is detached and removed once the restore is done (or,
 * after a killed one, by the next restore or the release of the container).
 */
const BASE = '/run/tsvz-restore';

export interface RestoreStage {
  dir: string;
  dev: string;
  root: string;
}

/** The stage of the container with host-global key `key` (runtime/container's key). */
export function restoreStage(key: string): RestoreStage {
  const dir = path.join(BASE, key);
  return { dir, dev: path.join(dir, 'restore-dev'), root: path.join(dir, 'restore-root') };
}

/** A fresh, empty stage owned by the container's root (host ids). */
export async function prepareRestoreStage(key: string, owner: { uid: number; gid: number }): Promise<RestoreStage> {
  const stage = restoreStage(key);
  await removeRestoreStage(key);
  fs.mkdirSync(BASE, { recursive: true, mode: 0o711 });
  fs.chmodSync(BASE, 0o711);
  fs.mkdirSync(stage.dir, { mode: 0o700 });
  fs.chownSync(stage.dir, owner.uid, owner.gid);
  fs.mkdirSync(stage.root, { mode: 0o700 });
  return stage;
}

/**
 * Detach whatever the stage holds and remove it; nothing to do when there
 * is none. Directories are removed one by one, never recursively: a mount
 * left there would be the container's rootfs.
 */
export async function removeRestoreStage(key: string): Promise<void> {
  const stage = restoreStage(key);
  if (!fs.existsSync(stage.dir)) return;
  // What a restore mounts, detached directly (no umount(8) to wait for); anything else the slow way.
  for (const point of [stage.dev, stage.root]) detach(point);
  if (mountsUnder(stage.dir).length > 0) await unmountUnder(stage.dir);
  const left = mountsUnder(stage.dir);
  if (left.length > 0) throw new SystemError(`cannot remove the restore stage ${stage.dir}: ${left.join(', ')} still mounted`);
  for (const d of [stage.dev, stage.root, stage.dir]) {
    try {
      fs.rmdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

const MNT_DETACH = 2;
const EINVAL = 22;
const ENOENT = 2;

const libc = lazyLibc((lib, koffi) => ({
  umount2: lib.func('int umount2(const char *target, int flags)') as (target: string, flags: number) => number,
  errno: (): number => koffi.errno(),
}));

/** Detach the mount at `point`; nothing mounted there (EINVAL) or no such path is fine. */
function detach(point: string): void {
  const l = libc();
  if (l.umount2(point, MNT_DETACH) === 0) return;
  const errno = l.errno();
  if (errno !== EINVAL && errno !== ENOENT) throw new SystemError(`cannot detach ${point} (${getSystemErrorName(-errno)})`);
}
