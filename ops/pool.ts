import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists } from '../lib/atomic-file';
import type { ContainerConfig } from '../runtime/config';
import { AlreadyExistsError, InvalidArgumentError, InvalidStateError, NotFoundError } from '../lib/errors';
import { validateName } from '../lib/names';
import { Root } from '../lib/root';
import { abandonPool, createPool, DEFAULT_POOL, destroyPool, getDriver, openDefaultPool, openPool, PoolCatalog, poolSource } from '../storage';
import type { DriverCapabilities, PoolEntry, PoolRecord } from '../storage';
import { recoverPool, withPoolIntent } from './recovery';

/** `tsvz pool create|list|info|rm`: storage pools on top of the pool catalog (storage/pool-catalog.ts). */

export interface PoolCreateOptions {
  driver: string;
  /** An existing place: a directory (dir), an empty directory on a btrfs (btrfs), a dataset (zfs), a VG (lvm). */
  source?: string;
  /** Bytes for a loop- or file-backed pool under the root. */
  size?: number;
}

export interface PoolSummary {
  name: string;
  driver: string;
  /** Where its data lives: a directory, an image, a dataset, a VG. */
  source: string;
  sizeBytes?: number;
  usedBytes?: number;
  /** Containers whose rootfs is in the pool (half-created ones marked so). */
  containers: string[];
  createdAt?: string;
  /** True for the built-in pool "default". */
  builtin?: boolean;
  /** Why the pool could not be opened (its usage is then unknown). */
  error?: string;
}

export interface PoolInfo extends PoolSummary {
  capabilities: DriverCapabilities;
  /** Volumes in the pool: one per container, named after it. */
  volumes: string[];
  record: PoolRecord;
}

export async function createStoragePool(root: Root, name: string, opts: PoolCreateOptions): Promise<PoolEntry> {
  validateName(name, 'pool');
  if (name === DEFAULT_POOL) throw new AlreadyExistsError('pool default already exists', 'it is built in, a directory under the root: pick another name');
  getDriver(opts.driver); // "unknown storage driver" before any lock or file
  const catalog = new PoolCatalog(root);
  return catalog.locked(name, async () => {
    // A create of this name that was killed: what it made goes first.
    await recoverPool(root, name);
    if (catalog.find(name)) throw new AlreadyExistsError(`pool ${name} already exists`, 'pick another name, or remove it with `tsvz pool rm`');
    const spec = { name, driver: opts.driver, source: opts.source, size: opts.size };
    // Journalled before the driver makes anything: a killed create is undone by the next create or rm of the name.
    return withPoolIntent(root, name, 'pool-create', {}, async (intent) => {
      await intent.will({ kind: 'abandon-pool', spec });
      const record = await createPool({ ...spec, rootDir: root.dir });
      const entry: PoolEntry = { name, record, createdAt: new Date().toISOString() };
      await catalog.add(entry);
      return entry;
    });
  });
}

export async function listStoragePools(root: Root): Promise<PoolSummary[]> {
  const users = containersByPool(root);
  const out: PoolSummary[] = [await defaultSummary(root, users)];
  const catalog = new PoolCatalog(root);
  for (const entry of catalog.list()) {
    const s: PoolSummary = { name: entry.name, driver: entry.record.driver, source: poolSource(entry.record), containers: users.get(entry.name) ?? [], createdAt: entry.createdAt };
    try {
      Object.assign(s, await (await catalog.opening(entry.name, () => openPool(entry.record))).usage());
    } catch (err) {
      s.error = (err as Error).message;
    }
    out.push(s);
  }
  return out;
}

export async function storagePoolInfo(root: Root, name: string): Promise<PoolInfo> {
  validateName(name, 'pool');
  const users = containersByPool(root);
  if (name === DEFAULT_POOL) {
    const pool = await openDefaultPool(root.dir);
    return { ...(await defaultSummary(root, users)), capabilities: pool.driver.capabilities, volumes: await pool.listVolumes(), record: pool.record };
  }
  const catalog = new PoolCatalog(root);
  const entry = catalog.get(name);
  const pool = await catalog.opening(name, () => openPool(entry.record));
  return {
    name,
    driver: entry.record.driver,
    source: poolSource(entry.record),
    ...(await pool.usage()),
    containers: users.get(name) ?? [],
    createdAt: entry.createdAt,
    capabilities: pool.driver.capabilities,
    volumes: await pool.listVolumes(),
    record: entry.record,
  };
}

/**
 * Remove a pool and what it made (image, loop device, mount, datasets, thin
 * pool; never a --source itself). Refused while any container uses it, and
 * while it holds volumes no container owns unless `force` (which deletes
 * them; a pool whose storage is gone is then just forgotten).
 */
export async function removeStoragePool(root: Root, name: string, opts: { force?: boolean } = {}): Promise<void> {
  validateName(name, 'pool');
  if (name === DEFAULT_POOL) throw new InvalidArgumentError('the default pool cannot be removed', 'it is built in');
  const catalog = new PoolCatalog(root);
  await catalog.locked(name, async () => {
    const recovered = await recoverPool(root, name);
    // Only the leftovers of a killed create were there: removing them was the whole job.
    if (recovered.length > 0 && !catalog.find(name)) return;
    const entry = catalog.get(name);
    const users = containersByPool(root).get(name) ?? [];
    if (users.length > 0) {
      throw new InvalidStateError(`pool ${name} is in use by ${users.length === 1 ? 'container' : 'containers'} ${users.join(', ')}`, 'destroy them first');
    }
    try {
      await destroyPool(entry.record, { force: opts.force === true });
    } catch (err) {
      if (!(opts.force && err instanceof NotFoundError)) throw err;
    }
    // Forced: whatever a removal killed half-way left of it (an image, a loop device, a mount) goes too.
    if (opts.force) await abandonPool({ name, driver: entry.record.driver, rootDir: root.dir });
    await catalog.remove(name);
  });
}

/** pool name -> containers in it, "NAME (half-created)" for a create in progress or interrupted. */
function containersByPool(root: Root): Map<string, string[]> {
  const users = new Map<string, string[]>();
  let entries: string[];
  try { entries = fs.readdirSync(root.containersDir).sort(); } catch { return users; }
  for (const e of entries) {
    const cfg = readJsonIfExists<ContainerConfig>(path.join(root.containersDir, e, 'config.json'));
    if (!cfg) continue;
    const label = e.startsWith('.') ? `${cfg.name} (half-created)` : cfg.name;
    users.set(cfg.pool, [...(users.get(cfg.pool) ?? []), label]);
  }
  return users;
}

async function defaultSummary(root: Root, users: Map<string, string[]>): Promise<PoolSummary> {
  const pool = await openDefaultPool(root.dir);
  const s: PoolSummary = { name: DEFAULT_POOL, driver: pool.driver.name, source: poolSource(pool.record), containers: users.get(DEFAULT_POOL) ?? [], builtin: true };
  try {
    Object.assign(s, await pool.usage());
  } catch { /* root not made yet */ }
  return s;
}
