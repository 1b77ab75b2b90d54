import path = require('node:path');
import { dirDriver, DirPoolRecord } from './dir';
import { ContainersLayout } from './dir-layout';
import type { Pool } from './driver';
import { DEFAULT_POOL } from './pool-catalog';

/**
 * The built-in pool "default": the dir driver in the layout every container
 * had before pools (dir-layout.ts), the rootfs a plain directory in the
 * container's own directory, snapshots beside it:
 *
 *   ROOT/containers/NAME/rootfs
 *   ROOT/containers/NAME/snapshots/SNAP
 *
 * It is never in the pool catalog: its record is made from the root.
 */

export function defaultPoolRecord(rootDir: string): DirPoolRecord {
  return { name: DEFAULT_POOL, driver: 'dir', path: path.join(rootDir, 'containers'), layout: 'containers' };
}

/**
 * The default pool of the root at `rootDir`. `building`: a container being
 * created in build directory `dir` (renamed into place when it is done): its
 * volume is made there, and moves with it.
 */
export function openDefaultPool(rootDir: string, building?: { vol: string; dir: string }): Promise<Pool> {
  const rec = defaultPoolRecord(rootDir);
  return building ? dirDriver.openOn(rec, new ContainersLayout(rec.path, building)) : dirDriver.openPool(rec);
}
