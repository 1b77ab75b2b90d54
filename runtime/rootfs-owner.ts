import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, SystemError } from '../lib/errors';
import { timeSlicer } from '../lib/poll';
import type { ContainerConfig, IdMapConfig } from './config';

/**
 * Who owns a user-namespaced container's rootfs on disk. Where the
 * filesystem supports idmapped mounts (this kernel: ext4, btrfs, xfs, tmpfs,
 * f2fs, vfat) the files keep ids 0..65535 and the container sees them
 * through a mount idmapped to its range: create, clone and import change
 * nothing on disk. Elsewhere (zfs-fuse: FUSE mounts are idmapped only when
 * the daemon asks for it, and zfs-fuse does not) the ids are shifted into the
 * container's range once, at create, clone and import (as LXC's
 * `lxc-usernsexec chown` and Incus's shifting do).
 */

// statfs f_type values (linux/magic.h) of filesystems with FS_ALLOW_IDMAP.
const IDMAP_FILESYSTEMS = new Set([
  0xef53, // ext2/3/4
  0x9123683e, // btrfs
  0x58465342, // xfs
  0x01021994, // tmpfs
  0xf2f52010, // f2fs
  0x4d44, // vfat
]);

/** How a new rootfs at `dir` is owned by a range. TSVZ_ROOTFS_SHIFT=1 shifts anyway (to measure and test shifting). */
export function rootfsOwnership(dir: string): IdMapConfig['rootfs'] {
  if (process.env.TSVZ_ROOTFS_SHIFT === '1') return 'shifted';
  let type: number;
  try {
    type = fs.statfsSync(dir).type;
  } catch (err) {
    throw new SystemError(`cannot tell the filesystem of ${dir}`, err);
  }
  return IDMAP_FILESYSTEMS.has(type) ? 'idmapped' : 'shifted';
}

/** Host uid and gid base of a tree's owner range: 0 for an unshifted tree. */
export interface OwnerBase {
  uid: number;
  gid: number;
}

/**
 * Whose ids the files of a container with id map `m` carry (the map from a
 * foreign config, `what` in errors): its range where its rootfs was
 * shifted, else the container's own ids (from 0).
 */
export function filesOwnerOf(m: IdMapConfig | undefined, what: string): OwnerBase {
  if (!m || m.rootfs !== 'shifted') return { uid: 0, gid: 0 };
  for (const v of [m.uid, m.gid]) {
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** 32) throw new InvalidArgumentError(`${what} has an id range starting at ${String(v)}`);
  }
  return { uid: m.uid, gid: m.gid };
}

/**
 * Move the owners of every file under `dir` from range `from` to range
 * `to` (`size` ids each): an id inside `from` becomes the same offset in
 * `to`, an id outside it stays. Symlinks are changed themselves, never
 * followed; other filesystems mounted inside are not entered; a file with
 * several links is changed once. Set-id bits, which chown clears, are put
 * back. File capabilities (security.capability) are cleared by the kernel
 * and not rewritten, and ACL entries naming users keep their ids: both are
 * rare in a rootfs, and are the shifted fallback's known limits. Returns
 * the number of files changed.
 */
export async function shiftOwnership(dir: string, from: OwnerBase, to: OwnerBase, size: number): Promise<number> {
  if (from.uid === to.uid && from.gid === to.gid) return 0;
  dir = fs.realpathSync(dir); // a pool's rootfs is a symlink to its volume
  const top = fs.lstatSync(dir);
  const seen = new Set<string>();
  const slice = timeSlicer();
  const move = (id: number, base: number, target: number) => (id >= base && id < base + size ? id - base + target : id);
  let changed = 0;
  const visit = (p: string, st: fs.Stats): void => {
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    const uid = move(st.uid, from.uid, to.uid);
    const gid = move(st.gid, from.gid, to.gid);
    if (uid === st.uid && gid === st.gid) return;
    fs.lchownSync(p, uid, gid);
    if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) fs.chmodSync(p, st.mode & 0o7777);
    changed++;
  };
  const walk = async (d: string): Promise<void> => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      await slice();
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      if (st.dev !== top.dev) continue; // a mount inside
      visit(p, st);
      if (st.isDirectory()) await walk(p);
    }
  };
  visit(dir, top);
  await walk(dir);
  return changed;
}

/**
 * Files owned from range `from` (another host's, a backup's) moved to how
 * container `config`'s rootfs at `dir` is owned (its range where shifted,
 * from 0 where idmapped), as create moves a filled rootfs's.
 */
export async function shiftToOwnerOf(config: ContainerConfig, dir: string, from: OwnerBase): Promise<void> {
  const m = config.idmap;
  if (!m) return;
  const to = m.rootfs === 'shifted' ? m : { uid: 0, gid: 0 };
  if (to.uid === from.uid && to.gid === from.gid) return;
  await shiftOwnership(dir, from, to, m.size);
}
