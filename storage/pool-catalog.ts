import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { AlreadyExistsError, NotFoundError } from '../lib/errors';
import { withLock } from '../lib/lock';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import type { PoolRecord } from './driver';
import { compareText } from '../lib/compare';

/**
 * The pool catalog: ROOT/pools.json maps pool names to the records their
 * storage driver returned at `pool create` (what it needs to reopen them),
 * written atomically. The pool "default" is built in and never in the file:
 * its containers keep their rootfs as a plain directory, ROOT/containers/NAME/rootfs.
 *
 * Locks (ROOT/locks/pools/): NAME.lock per pool, shared by operations on the
 * pool's volumes and held alone by `pool create`/`pool rm`; .catalog.lock
 * around each read-modify-write of pools.json.
 */

export const DEFAULT_POOL = 'default';
const LOCK_WAIT_MS = 10_000;

export interface PoolEntry {
  name: string;
  record: PoolRecord;
  createdAt: string;
}

interface CatalogFile {
  version: 1;
  pools: Record<string, PoolEntry>;
}

export class PoolCatalog {
  constructor(readonly root: Root) {}

  get file(): string {
    return path.join(this.root.dir, 'pools.json');
  }

  private get locksDir(): string {
    return path.join(this.root.locksDir, 'pools');
  }

  /** Pools made with `pool create`, by name (the default pool is not among them). */
  list(): PoolEntry[] {
    return Object.values(this.read().pools).sort((a, b) => compareText(a.name, b.name));
  }

  find(name: string): PoolEntry | undefined {
    return this.read().pools[name];
  }

  get(name: string): PoolEntry {
    const entry = this.find(validateName(name, 'pool'));
    if (!entry) throw new NotFoundError(`no such pool: ${name}`, 'see `tsvz pool list`');
    return entry;
  }

  async add(entry: PoolEntry): Promise<void> {
    await this.update((file) => {
      if (file.pools[entry.name]) throw new AlreadyExistsError(`pool ${entry.name} already exists`);
      file.pools[entry.name] = entry;
    });
  }

  async remove(name: string): Promise<void> {
    await this.update((file) => {
      delete file.pools[name];
    });
  }

  /** Run `body` holding pool `name`'s lock: shared for work on its volumes, exclusive to create or remove it. */
  locked<T>(name: string, body: () => Promise<T>, opts: { shared?: boolean } = {}): Promise<T> {
    validateName(name, 'pool');
    this.ensureLocksDir();
    return withLock(path.join(this.locksDir, `${name}.lock`), `pool ${name}`, LOCK_WAIT_MS, body, opts);
  }

  /**
   * Run `body` holding pool `name`'s open lock, exclusive: opening a pool
   * after a reboot attaches its loop device, mounts it or imports its zpool,
   * which two openers (each holding the pool lock shared) must not do at once.
   */
  opening<T>(name: string, body: () => Promise<T>): Promise<T> {
    validateName(name, 'pool');
    this.ensureLocksDir();
    return withLock(path.join(this.locksDir, `.${name}.open.lock`), `pool ${name}`, LOCK_WAIT_MS, body);
  }

  private read(): CatalogFile {
    return readJsonIfExists<CatalogFile>(this.file) ?? { version: 1, pools: {} };
  }

  private async update(change: (file: CatalogFile) => void): Promise<void> {
    this.ensureLocksDir();
    await withLock(path.join(this.locksDir, '.catalog.lock'), 'the pool catalog', LOCK_WAIT_MS, async () => {
      const file = this.read();
      change(file);
      await writeJsonAtomic(this.file, file);
    });
  }

  private ensureLocksDir(): void {
    this.root.ensure();
    fs.mkdirSync(this.locksDir, { recursive: true, mode: 0o700 });
  }
}
