import { AlreadyExistsError, NotFoundError } from '../lib/errors';
import type { Pool, PoolRecord } from './driver';
import { StorageError } from './errors';

/**
 * What a pool holds, checked before a driver acts: one set of checks and
 * words for every driver, each asking the driver's own probes
 * (Pool.hasVolume, hasSnapshot: a directory, a subvolume, a dataset, an LV).
 */

export const FULL_STREAM_HINT = 'a full stream creates the volume: delete it first or receive under another name';

export async function requireVolume(pool: Pool, vol: string): Promise<void> {
  if (!(await pool.hasVolume(vol))) throw new NotFoundError(`volume ${vol} not found in pool ${pool.record.name}`);
}

/** The volume, then its snapshot. */
export async function requireSnapshot(pool: Pool, vol: string, snap: string): Promise<void> {
  await requireVolume(pool, vol);
  if (!(await pool.hasSnapshot(vol, snap))) throw new NotFoundError(`snapshot ${vol}@${snap} not found`, `see the volume's snapshots`);
}

export async function requireNoVolume(pool: Pool, vol: string, hint?: string): Promise<void> {
  if (await pool.hasVolume(vol)) throw volumeExists(pool, vol, hint);
}

export async function requireNoSnapshot(pool: Pool, vol: string, snap: string): Promise<void> {
  if (await pool.hasSnapshot(vol, snap)) throw snapshotExists(vol, snap);
}

export function volumeExists(pool: Pool, vol: string, hint?: string): AlreadyExistsError {
  return new AlreadyExistsError(`volume ${vol} already exists in pool ${pool.record.name}`, hint);
}

export function snapshotExists(vol: string, snap: string): AlreadyExistsError {
  return new AlreadyExistsError(`snapshot ${vol}@${snap} already exists`);
}

/**
 * Open a pool to destroy it: refused (ENOTEMPTY) while it holds volumes,
 * unless forced. Returns the opened pool and the volumes it holds.
 */
export async function openForDestroy<P extends Pool>(
  driver: { openPool(record: PoolRecord): Promise<P> },
  record: PoolRecord,
  force = false,
): Promise<{ pool: P; volumes: string[] }> {
  const pool = await driver.openPool(record);
  const volumes = await pool.listVolumes();
  if (volumes.length > 0 && !force) {
    throw new StorageError(`pool ${record.name} still has volumes: ${volumes.join(', ')}`, { code: 'ENOTEMPTY', hint: 'delete them first, or force' });
  }
  return { pool, volumes };
}
