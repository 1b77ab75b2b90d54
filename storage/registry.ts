import { InvalidArgumentError } from '../lib/errors';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, StorageDriver } from './driver';

/**
 * Storage drivers by name, each loaded on first use: a command on a btrfs
 * pool need not load zfs, lvm, or tar-stream. Only drivers whose tools and
 * kernel support are here are offered.
 */
const LOADERS: Record<string, () => StorageDriver> = {
  dir: () => (require('./dir') as typeof import('./dir')).dirDriver,
  btrfs: () => (require('./btrfs') as typeof import('./btrfs')).btrfsDriver,
  zfs: () => (require('./zfs') as typeof import('./zfs')).zfsDriver,
  lvm: () => (require('./lvm') as typeof import('./lvm')).lvmDriver,
};

export function driverNames(): string[] {
  return Object.keys(LOADERS);
}

export function getDriver(name: string): StorageDriver {
  const load = Object.prototype.hasOwnProperty.call(LOADERS, name) ? LOADERS[name] : undefined;
  if (!load) throw new InvalidArgumentError(`unknown storage driver ${JSON.stringify(name)} (${driverNames().join(', ')})`);
  return load();
}

/** Drivers usable on this host. */
export function availableDrivers(): StorageDriver[] {
  return driverNames().map(getDriver).filter((d) => d.missing().length === 0);
}

/** For `tsvz doctor`: every driver, what it can do, and what it lacks here. */
export function driverReport(): { name: string; capabilities: DriverCapabilities; missing: string[] }[] {
  return driverNames().map(getDriver).map((d) => ({ name: d.name, capabilities: d.capabilities, missing: d.missing() }));
}

/** Create a pool with the driver the spec names (refused when that driver can't work here). */
export async function createPool(spec: PoolSpec): Promise<PoolRecord> {
  return getDriver(spec.driver).createPool(spec);
}

export async function openPool(record: PoolRecord): Promise<Pool> {
  return getDriver(record.driver).openPool(record);
}

export async function destroyPool(record: PoolRecord, opts: { force?: boolean } = {}): Promise<void> {
  return getDriver(record.driver).destroyPool(record, opts);
}
