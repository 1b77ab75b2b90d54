import type { Readable } from 'node:stream';

/**
 * The storage-driver interface (LXC's lxc_storage_ops, Incus's Driver + Info):
 * every backend (dir, btrfs, zfs, lvm) implements it and says what it can do.
 * A *pool* is one place volumes live (a loop image, a dataset, a thin pool);
 * a *volume* holds one container's rootfs; *snapshots* are read-only points
 * in a volume's history; a *clone* is a new volume made from a snapshot.
 */

/** Stream formats: a driver's native one, or the universal tar stream. */
export type SendFormat = 'btrfs' | 'zfs' | 'tar';

export interface DriverCapabilities {
  /** A snapshot captures one instant of the whole volume (false: copied file by file). */
  atomicSnapshot: boolean;
  /** Snapshots and clones share blocks with their origin instead of copying them. */
  cowClone: boolean;
  /** send() with a parent carries only the difference (native formats only; tar is always full). */
  incrementalSend: boolean;
  /** Rolling back to an older snapshot keeps the newer ones (zfs can only go back to the newest). */
  rollbackToAny: boolean;
  /** Formats send() produces and receive() accepts, preferred first; always ends with 'tar'. */
  sendFormats: SendFormat[];
}

export interface PoolSpec {
  name: string;
  driver: string;
  /** An existing place to use: a directory (dir), a btrfs mount (btrfs), a dataset (zfs), a VG (lvm). */
  source?: string;
  /** Bytes for a new loop-/file-backed pool under the root. */
  size?: number;
  /** The tsvz root: loop images and mounts live in <rootDir>/pools/<name>. */
  rootDir: string;
}

/** What the caller persists to reopen a pool: JSON-serialisable, driver-specific fields. */
export interface PoolRecord {
  name: string;
  driver: string;
  [key: string]: unknown;
}

export interface SnapshotInfo {
  name: string;
  /** ISO 8601 */
  createdAt?: string;
  /** Space only this snapshot holds (freed by deleting it), where the storage knows. */
  sizeBytes?: number;
  /** Data the snapshot refers to, shared or not, where the storage knows. */
  referencedBytes?: number;
}

export interface SendOptions {
  format: SendFormat;
  /** Snapshot the receiver already has: the stream carries only what changed since. */
  parent?: string;
}

export interface PoolUsage {
  sizeBytes?: number;
  usedBytes?: number;
}

export interface StorageDriver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  /** Empty when usable here; otherwise what is missing ("btrfs-progs not installed", ...). */
  missing(): Promise<string[]>;
  /** Create the pool; a failure leaves no image, loop device, mount or dataset behind. */
  createPool(spec: PoolSpec): Promise<PoolRecord>;
  /** Make the pool usable again (after a reboot: attach the loop image, import, mount). */
  openPool(record: PoolRecord): Promise<Pool>;
  /** Remove the pool; refused while volumes remain unless `force`. Never removes a --source itself. */
  destroyPool(record: PoolRecord, opts?: { force?: boolean }): Promise<void>;
  /**
   * A create of `spec` was killed half-way: remove what it made that lives
   * outside the pool's home `home` (a zpool or VG named after the pool, the
   * empty layout made in a --source). abandonPool() removes the home itself.
   */
  abandon?(spec: PoolSpec, home: string): Promise<void>;
  /** Where a pool's data lives, for people: a directory, an image, a dataset, a VG. */
  describeSource(record: PoolRecord): string;
}

export interface Pool {
  readonly record: PoolRecord;
  readonly driver: StorageDriver;
  listVolumes(): Promise<string[]>;
  /** Does the storage hold this volume? (a bad name throws) */
  hasVolume(vol: string): Promise<boolean>;
  /** Does the storage hold this snapshot of the volume? (false when the volume is gone too) */
  hasSnapshot(vol: string, snap: string): Promise<boolean>;
  /** Create an empty volume; returns the mounted directory that holds the rootfs. */
  createVolume(vol: string): Promise<string>;
  /** Where the volume's rootfs is (whether or not it exists). */
  volumePath(vol: string): string;
  /** Remove a volume and its snapshots. Clones made from it stay intact (zfs promotes them). */
  deleteVolume(vol: string): Promise<void>;
  snapshot(vol: string, snap: string): Promise<SnapshotInfo>;
  /** What the storage really holds, oldest first. */
  listSnapshots(vol: string): Promise<SnapshotInfo[]>;
  /** Refused (code EDEPENDENT) while a clone was made from this snapshot. */
  deleteSnapshot(vol: string, snap: string): Promise<void>;
  /** Make the volume's content the snapshot's again; never leaves a half-restored tree. */
  rollback(vol: string, snap: string): Promise<void>;
  /** New volume `dst` from `src@snap`, or from src's current state when snap is undefined. */
  clone(src: string, snap: string | undefined, dst: string): Promise<string>;
  /** Where the driver keeps a snapshot (a path, dataset@snap or VG/LV): what the snapshot catalog records. */
  snapshotHandle(vol: string, snap: string): string;
  /** A stream of the snapshot in `format`; bad names and missing snapshots reject before anything is read. */
  send(vol: string, snap: string, opts: SendOptions): Promise<Readable>;
  /**
   * Store a stream from send() as snapshot `snap` of `vol` and make it the
   * volume's current content. Full streams create the volume (it must not
   * exist); incremental ones need `parent` here already.
   */
  receive(vol: string, snap: string, opts: SendOptions, input: Readable): Promise<void>;
  usage(): Promise<PoolUsage>;
}
