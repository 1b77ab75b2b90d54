import fs = require('node:fs');
import path = require('node:path');
import { openDefaultPool } from './default-pool';
import { AlreadyExistsError, NotSupportedError } from '../lib/errors';
import type { Root } from '../lib/root';
import { DEFAULT_POOL, PoolCatalog } from './pool-catalog';
import type { Readable } from 'node:stream';
import type { DriverCapabilities, Pool, SendOptions, SnapshotInfo } from './driver';
import type { UndoStack } from '../lib/undo';

/**
 * Where containers' root filesystems live: a volume per container in its
 * pool, named after the container. ROOT/containers/NAME/rootfs is a symlink
 * to the volume's mounted directory (the monitor and CRIU follow it), so
 * everything that uses `c.paths.rootfs` works whatever the pool. The default
 * pool keeps the rootfs as a plain directory there instead (default-pool.ts).
 */
export interface RootfsStore {
  readonly pool: string;
  readonly driver: string;
  readonly capabilities: DriverCapabilities;
  /** An empty rootfs for container `name`, being built in `buildDir`: returns the directory to fill. `undo` removes it. */
  createRootfs(name: string, buildDir: string, undo: UndoStack): Promise<string>;
  /** `dst`'s rootfs (being built in `buildDir`) from `src@snap`, or from src's current state. `undo` removes it. */
  cloneRootfs(src: string, snap: string | undefined, dst: string, buildDir: string, undo: UndoStack): Promise<string>;
  /** Remove the container's volume and its snapshots; nothing to do when there is none. */
  removeRootfs(name: string): Promise<void>;
  snapshot(name: string, snap: string): Promise<SnapshotInfo>;
  /** What the storage really holds, oldest first. */
  listSnapshots(name: string): Promise<SnapshotInfo[]>;
  deleteSnapshot(name: string, snap: string): Promise<void>;
  rollback(name: string, snap: string): Promise<void>;
  /** Where the driver keeps a snapshot (a path, dataset or LV): recorded in the snapshot catalog. */
  snapshotHandle(name: string, snap: string): string;
  /** A stream of the snapshot (Pool.send): backups ship it to another host's store, migration to another host's pool. */
  send(name: string, snap: string, opts: SendOptions): Promise<Readable>;
  /**
   * `name`'s rootfs (being built in `buildDir`) received from a full
   * native stream as snapshot `snap` (Pool.receive). `undo` removes it.
   */
  receiveRootfs(name: string, snap: string, opts: SendOptions, input: Readable, buildDir: string, undo: UndoStack): Promise<string>;
  /** An incremental stream onto `name`'s rootfs (Pool.receive with a parent): its content becomes `snap`'s. */
  receive(name: string, snap: string, opts: SendOptions, input: Readable): Promise<void>;
}

/**
 * Run `body` with the store of pool `pool`, holding the pool's lock shared
 * (so `pool rm` can't remove it meanwhile). An unknown pool is "no such pool".
 */
export async function withStore<T>(root: Root, pool: string, body: (store: RootfsStore) => Promise<T>): Promise<T> {
  if (pool === DEFAULT_POOL) return body(new DefaultStore(root, await openDefaultPool(root.dir)));
  const catalog = new PoolCatalog(root);
  catalog.get(pool); // a clear error before taking a lock named after a typo
  // Loaded here: containers in the default pool load the dir driver only.
  const { openPool } = require('./registry') as typeof import('./registry');
  return catalog.locked(pool, async () => {
    const opened = await catalog.opening(pool, () => openPool(catalog.get(pool).record));
    return body(new PoolStore(opened));
  }, { shared: true });
}

class PoolStore implements RootfsStore {
  constructor(protected readonly p: Pool) {}

  get pool(): string { return this.p.record.name; }
  get driver(): string { return this.p.driver.name; }
  get capabilities(): DriverCapabilities { return this.p.driver.capabilities; }

  async createRootfs(name: string, buildDir: string, undo: UndoStack): Promise<string> {
    let dir: string;
    try {
      dir = await this.p.createVolume(name);
    } catch (err) {
      if (err instanceof AlreadyExistsError) {
        throw new AlreadyExistsError(err.message, `left by an interrupted create? \`tsvz destroy --force ${name}\` removes it`);
      }
      throw err;
    }
    undo.add(`delete volume ${name}`, () => this.p.deleteVolume(name));
    fs.symlinkSync(dir, path.join(buildDir, 'rootfs'));
    return dir;
  }

  async receiveRootfs(name: string, snap: string, opts: SendOptions, input: Readable, buildDir: string, undo: UndoStack): Promise<string> {
    if (await this.p.hasVolume(name)) {
      input.destroy();
      throw new AlreadyExistsError(`pool ${this.pool} already holds a volume ${name}`, `left by an interrupted create? \`tsvz destroy --force ${name}\` removes it`);
    }
    // A receive that fails removes what it made; one that succeeded is undone from here on.
    await this.p.receive(name, snap, opts, input);
    undo.add(`delete volume ${name}`, () => this.p.deleteVolume(name));
    const dir = this.p.volumePath(name);
    fs.symlinkSync(dir, path.join(buildDir, 'rootfs'));
    return dir;
  }

  receive(name: string, snap: string, opts: SendOptions, input: Readable): Promise<void> { return this.p.receive(name, snap, opts, input); }

  async cloneRootfs(src: string, snap: string | undefined, dst: string, buildDir: string, undo: UndoStack): Promise<string> {
    const dir = await this.p.clone(src, snap, dst);
    undo.add(`delete volume ${dst}`, () => this.p.deleteVolume(dst));
    fs.symlinkSync(dir, path.join(buildDir, 'rootfs'));
    return dir;
  }

  async removeRootfs(name: string): Promise<void> {
    if (await this.p.hasVolume(name)) await this.p.deleteVolume(name);
  }

  snapshot(name: string, snap: string): Promise<SnapshotInfo> { return this.p.snapshot(name, snap); }
  listSnapshots(name: string): Promise<SnapshotInfo[]> { return this.p.listSnapshots(name); }
  deleteSnapshot(name: string, snap: string): Promise<void> { return this.p.deleteSnapshot(name, snap); }
  rollback(name: string, snap: string): Promise<void> { return this.p.rollback(name, snap); }
  send(name: string, snap: string, opts: SendOptions): Promise<Readable> { return this.p.send(name, snap, opts); }

  snapshotHandle(name: string, snap: string): string {
    return this.p.snapshotHandle(name, snap);
  }
}

/**
 * The default pool: the rootfs is the volume itself, not a link to it. A
 * new container's is made in its build directory, which create renames
 * into place: the volume moves with it, and goes with it on failure.
 */
class DefaultStore extends PoolStore {
  constructor(private readonly root: Root, pool: Pool) {
    super(pool);
  }

  async createRootfs(name: string, buildDir: string): Promise<string> {
    return (await openDefaultPool(this.root.dir, { vol: name, dir: buildDir })).createVolume(name);
  }

  async cloneRootfs(src: string, snap: string | undefined, dst: string, buildDir: string): Promise<string> {
    return (await openDefaultPool(this.root.dir, { vol: dst, dir: buildDir })).clone(src, snap, dst);
  }

  /** The default pool speaks tar only, which create unpacks itself. */
  async receiveRootfs(_name: string, _snap: string, opts: SendOptions, input: Readable): Promise<string> {
    input.destroy();
    throw new NotSupportedError(`the default pool cannot receive ${opts.format} streams`, 'send it the tar stream');
  }
}
