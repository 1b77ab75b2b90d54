import fs = require('node:fs');
import path = require('node:path');
import { unmountUnder } from '../lib/mounts';
import type { PoolSpec } from './driver';
import { getDriver } from './registry';
import { detachLoops } from './loop';
import { poolDir } from './validate';

/**
 * What is left of a pool whose `pool create` (or `pool rm`) was killed
 * half-way: removed, as far as it belongs to the pool. Everything a
 * create makes lives in the pool's home, ROOT/pools/NAME (loop images, their
 * mounts), or is named by it (a --size zpool or VG on one of those images):
 * mounts under the home are unmounted, loop devices of its images
 * detached, the driver drops what it named after the pool, and the home
 * goes. A --source is never removed, only the empty layout made in it.
 */
export async function abandonPool(spec: PoolSpec): Promise<void> {
  const driver = getDriver(spec.driver);
  const home = poolDir(spec.rootDir, spec.name);
  await driver.abandon?.(spec, home);
  await unmountUnder(home);
  let images: string[] = [];
  try { images = fs.readdirSync(home).filter((n) => n.endsWith('.img')).map((n) => path.join(home, n)); } catch { /* no home */ }
  for (const image of images) await detachLoops(image);
  await fs.promises.rm(home, { recursive: true, force: true });
}
