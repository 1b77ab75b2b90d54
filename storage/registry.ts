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
export async function availableDrivers(): Promise<StorageDriver[]> {
  const report = await driverReport();
  return report.filter((r) => r.missing.length === 0).map((r) => getDriver(r.name));
}

/** For `tsvz doctor`: every driver, what it can do, and what it lacks here (probed together). */
export async function driverReport(): Promise<{ name: string; capabilities: DriverCapabilities; missing: string[] }[]> {
  const drivers = driverNames().map(getDriver);
  const missing = await Promise.all(drivers.map((d) => d.missing()));
  return drivers.map((d, i) => ({ name: d.name, capabilities: d.capabilities, missing: missing[i] }));
}

/** Where a pool's data lives, for `pool list` and `pool info` ("-" for a driver this tsvz does not know). */
export function poolSource(record: PoolRecord): string {
  const load = Object.prototype.hasOwnProperty.call(LOADERS, record.driver) ? LOADERS[record.driver] : undefined;
  return load ? load().describeSource(record) : '-';
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
