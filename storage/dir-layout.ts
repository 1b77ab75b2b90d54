import fs = require('node:fs');
import path = require('node:path');
import { visibleEntries } from './tree';

/**
 * Where a dir pool keeps its trees. Two layouts, one driver (dir.ts):
 *
 * A created pool (`pool create --driver dir`), under its directory:
 *   volumes/<vol>              the rootfs
 *   snapshots/<vol>/<snap>     copies
 *   origins/<clone>.json       {volume, snapshot} a clone was made from
 *   .trash/                    trees being removed
 *
 * The built-in pool "default", in each container's own directory (where
 * every container's rootfs was before pools, so older roots keep working):
 *   ROOT/containers/<vol>/rootfs
 *   ROOT/containers/<vol>/snapshots/<snap>
 *   ROOT/containers/<vol>/rootfs-origin.json
 * A container being created is built elsewhere (a hidden directory renamed
 * into place at the end): its volume is made there, and moves with it.
 *
 * Every staging name starts with "." (no valid volume or snapshot name does).
 */
export interface DirLayout {
  /** The directory the pool lives in (its usage is that filesystem's). */
  readonly top: string;
  /** Names that may be volumes: those whose volumePath is a directory are. */
  candidates(): string[];
  volumePath(vol: string): string;
  snapshotsDir(vol: string): string;
  originFile(vol: string): string;
  /** Where a removed tree of `vol` is moved (one rename on the same filesystem) before it is removed. */
  trashDir(vol: string): string;
  /**
   * Directories a sweep visits for left-overs of killed operations: all of
   * them when the pool is opened (`vol` undefined), or those of one volume
   * before work on it.
   */
  stagingDirs(vol?: string): string[];
  /** Make the directory a new volume `vol` goes into. */
  prepare(vol: string): void;
  /** After `vol` went: remove what only held it. */
  release(vol: string): void;
}

export class PoolLayout implements DirLayout {
  static readonly DIRS = ['volumes', 'snapshots', 'origins', '.trash'];

  constructor(readonly top: string) {}

  candidates(): string[] { return visibleEntries(path.join(this.top, 'volumes')); }
  volumePath(vol: string): string { return path.join(this.top, 'volumes', vol); }
  snapshotsDir(vol: string): string { return path.join(this.top, 'snapshots', vol); }
  originFile(vol: string): string { return path.join(this.top, 'origins', `${vol}.json`); }
  trashDir(): string { return path.join(this.top, '.trash'); }

  stagingDirs(vol?: string): string[] {
    // One pool's directories are few: all are swept at open, none later.
    if (vol !== undefined) return [];
    const snapshots = path.join(this.top, 'snapshots');
    return [path.join(this.top, 'volumes'), ...visibleEntries(snapshots).map((v) => path.join(snapshots, v)), this.trashDir()];
  }

  prepare(): void { /* volumes/ is made with the pool */ }
  release(): void { /* nothing but the volume held it */ }
}

export class ContainersLayout implements DirLayout {
  /** `building`: a container being created, whose directory is still its build directory. */
  constructor(readonly top: string, private readonly building?: { vol: string; dir: string }) {}

  private containerDir(vol: string): string {
    return this.building?.vol === vol ? this.building.dir : path.join(this.top, vol);
  }

  candidates(): string[] {
    const names = visibleEntries(this.top);
    return this.building && !names.includes(this.building.vol) ? [...names, this.building.vol].sort() : names;
  }

  volumePath(vol: string): string { return path.join(this.containerDir(vol), 'rootfs'); }
  snapshotsDir(vol: string): string { return path.join(this.containerDir(vol), 'snapshots'); }
  originFile(vol: string): string { return path.join(this.containerDir(vol), 'rootfs-origin.json'); }
  trashDir(vol: string): string { return this.containerDir(vol); }

  stagingDirs(vol?: string): string[] {
    // Every container's directory at every open would cost a walk of them all: one container's, before work on it.
    return vol === undefined ? [] : [this.containerDir(vol), this.snapshotsDir(vol)];
  }

  prepare(vol: string): void {
    fs.mkdirSync(this.containerDir(vol), { recursive: true, mode: 0o700 });
  }

  release(vol: string): void {
    try {
      fs.rmdirSync(this.containerDir(vol)); // only when empty: a container's config and state stay
    } catch { /* not empty, or gone */ }
  }
}
