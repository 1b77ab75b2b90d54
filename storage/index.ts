/** The storage library's public face: what the CLI (`tsvz pool`, `snapshot`, `clone`) and migrate/ use. */
export type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendFormat, SendOptions, SnapshotInfo, StorageDriver } from './driver';
export { StorageError } from './errors';
export { canSendIncremental, negotiateFormat } from './negotiate';
export { availableDrivers, createPool, destroyPool, driverNames, driverReport, getDriver, openPool } from './registry';
export { validateSnapshotName, validateVolumeName } from './validate';
