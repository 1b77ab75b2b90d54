import fs = require('node:fs');
import path = require('node:path');
import { AlreadyExistsError, NotFoundError } from '../lib/errors';
import type { Root } from '../lib/root';
import type { DriverCapabilities, SnapshotInfo } from './driver';
import { storageFailure } from './errors';
import { exchangePaths } from '../lib/libc-fs';
import { copyTree } from './copy-tree';
import { byCreation, createdAt, isDirectory, isStaleStaging, removeTree, stagingPath, visibleEntries } from './tree';
import { validateSnapshotName } from './validate';
import type { UndoStack } from '../lib/undo';
import type { RootfsStore } from './volumes';

/**
 * The built-in pool "default": what every container had before pools, kept
 * as it was. The rootfs is a plain directory in the container's own
 * directory, and snapshots are copies beside it (as the dir driver makes
 * them: `cp -a --reflink=auto` under a hidden staging name, renamed into
 * place; rollback swaps a fresh copy in with one renameat2 RENAME_EXCHANGE):
 *
 *   ROOT/containers/NAME/rootfs
 *   ROOT/containers/NAME/snapshots/SNAP
 *
 * Removing the container's directory removes them all.
 */
export class DefaultStore implements RootfsStore {
  readonly pool = 'default';
  readonly driver = 'dir';
  // The dir driver's (runtime/storage/dir.ts), not imported: create and destroy stay off the storage modules.
  readonly capabilities: DriverCapabilities = { atomicSnapshot: false, cowClone: false, incrementalSend: false, rollbackToAny: true, sendFormats: ['tar'] };

  constructor(private readonly root: Root) {}

  private rootfs(name: string): string { return path.join(this.root.containerDir(name), 'rootfs'); }
  private snapshotsDir(name: string): string { return path.join(this.root.containerDir(name), 'snapshots'); }
  private snapshotPath(name: string, snap: string): string { return path.join(this.snapshotsDir(name), validateSnapshotName(snap)); }

  async createRootfs(_name: string, buildDir: string): Promise<string> {
    const dir = path.join(buildDir, 'rootfs');
    fs.mkdirSync(dir, { mode: 0o755 }); // removed with the build directory on failure
    return dir;
  }

  async cloneRootfs(src: string, snap: string | undefined, dst: string, buildDir: string, undo: UndoStack): Promise<string> {
    const from = snap === undefined ? this.rootfs(src) : this.existingSnapshot(src, snap);
    const dir = path.join(buildDir, 'rootfs');
    undo.add(`remove ${dir}`, () => removeTree(dir));
    try {
      await copyTree(from, dir);
    } catch (err) {
      throw storageFailure(`clone ${src}${snap ? `@${snap}` : ''} to ${dst}`, this.pool, err);
    }
    return dir;
  }

  async removeRootfs(): Promise<void> {
    // Rootfs and snapshots live in the container's directory, which destroy removes.
  }

  async snapshot(name: string, snap: string): Promise<SnapshotInfo> {
    const dst = this.snapshotPath(name, snap);
    if (fs.existsSync(dst)) throw new AlreadyExistsError(`snapshot ${name}@${snap} already exists`);
    fs.mkdirSync(this.snapshotsDir(name), { recursive: true, mode: 0o700 });
    this.sweep(name);
    const tmp = stagingPath(this.snapshotsDir(name), `new-${snap}`);
    try {
      await copyTree(this.rootfs(name), tmp);
      fs.renameSync(tmp, dst);
    } catch (err) {
      removeTree(tmp);
      throw storageFailure(`snapshot ${name}@${snap}`, this.pool, err);
    }
    return this.info(name, snap);
  }

  async listSnapshots(name: string): Promise<SnapshotInfo[]> {
    const snaps = visibleEntries(this.snapshotsDir(name)).filter((s) => isDirectory(this.snapshotPath(name, s)));
    return byCreation(snaps, (s) => this.snapshotPath(name, s)).map((s) => this.info(name, s));
  }

  async deleteSnapshot(name: string, snap: string): Promise<void> {
    const dir = this.existingSnapshot(name, snap);
    // Out of sight in one rename, then removed: a failure half-way leaves only a hidden tree.
    const trash = stagingPath(this.snapshotsDir(name), `rm-${snap}`);
    fs.renameSync(dir, trash);
    removeTree(trash);
  }

  async rollback(name: string, snap: string): Promise<void> {
    const src = this.existingSnapshot(name, snap);
    const rootfs = this.rootfs(name);
    this.sweep(name);
    const tmp = stagingPath(this.root.containerDir(name), 'rollback');
    try {
      await copyTree(src, tmp);
      exchangePaths(tmp, rootfs); // the one step that changes what the rootfs shows
    } catch (err) {
      removeTree(tmp);
      throw storageFailure(`roll back ${name} to ${snap}`, this.pool, err);
    }
    removeTree(tmp); // now the old content
  }

  snapshotHandle(name: string, snap: string): string {
    return this.snapshotPath(name, snap);
  }

  /** Staging trees of operations whose process was killed mid-way. */
  private sweep(name: string): void {
    for (const dir of [this.root.containerDir(name), this.snapshotsDir(name)]) {
      let entries: string[] = [];
      try { entries = fs.readdirSync(dir); } catch { /* none yet */ }
      for (const e of entries.filter(isStaleStaging)) removeTree(path.join(dir, e));
    }
  }

  private existingSnapshot(name: string, snap: string): string {
    const dir = this.snapshotPath(name, snap);
    if (!isDirectory(dir)) throw new NotFoundError(`snapshot ${name}@${snap} not found`, `see \`tsvz snapshot list ${name}\``);
    return dir;
  }

  private info(name: string, snap: string): SnapshotInfo {
    return { name: snap, createdAt: createdAt(this.snapshotPath(name, snap)) };
  }
}
