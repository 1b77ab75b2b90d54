import { InvalidArgumentError } from '../errors';
import { btrfsDriver } from './btrfs';
import { dirDriver } from './dir';
import type { DriverCapabilities, Pool, PoolRecord, PoolSpec, StorageDriver } from './driver';
import { lvmDriver } from './lvm';
import { zfsDriver } from './zfs';

/** Storage drivers by name; only those whose tools and kernel support are here are offered. */

const DRIVERS: ReadonlyMap<string, StorageDriver> = new Map(
  [dirDriver, btrfsDriver, zfsDriver, lvmDriver].map((d) => [d.name, d] as [string, StorageDriver]),
);

export function driverNames(): string[] {
  return [...DRIVERS.keys()];
}

export function getDriver(name: string): StorageDriver {
  const driver = DRIVERS.get(name);
  if (!driver) throw new InvalidArgumentError(`unknown storage driver ${JSON.stringify(name)} (${driverNames().join(', ')})`);
  return driver;
}

/** Drivers usable on this host. */
export function availableDrivers(): StorageDriver[] {
  return [...DRIVERS.values()].filter((d) => d.missing().length === 0);
}

/** For `tsvz doctor`: every driver, what it can do, and what it lacks here. */
export function driverReport(): { name: string; capabilities: DriverCapabilities; missing: string[] }[] {
  return [...DRIVERS.values()].map((d) => ({ name: d.name, capabilities: d.capabilities, missing: d.missing() }));
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
