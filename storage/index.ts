/**
 * The storage library's public face: what ops/ (create, clone, destroy,
 * snapshot, `tsvz pool`), doctor and migrate use. Drivers are loaded on
 * first use (registry.ts); the default pool is the dir driver (default-pool.ts).
 */
export type { DriverCapabilities, Pool, PoolRecord, PoolSpec, PoolUsage, SendFormat, SendOptions, SnapshotInfo, StorageDriver } from './driver';
export { StorageError } from './errors';
export { canSendIncremental, negotiateFormat, pickFormat } from './negotiate';
export { availableDrivers, createPool, destroyPool, driverNames, driverReport, getDriver, openPool, poolSource } from './registry';
export { defaultPoolRecord, openDefaultPool } from './default-pool';
export { DEFAULT_POOL, PoolCatalog } from './pool-catalog';
export type { PoolEntry } from './pool-catalog';
export { SnapshotCatalog } from './snapshot-catalog';
export type { SnapshotRecord } from './snapshot-catalog';
export { withStore } from './volumes';
export type { RootfsStore } from './volumes';
export { validateSnapshotName, validateVolumeName } from './validate';
export { abandonPool } from './abandon';
