import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { compareText } from '../lib/compare';

/** What tsvz knows of one snapshot of a container's rootfs. */
export interface SnapshotRecord {
  name: string;
  /** ISO 8601 */
  createdAt: string;
  pool: string;
  /** Where the driver keeps it: a path, a dataset@snap, an LV. */
  handle: string;
  /** Memory too: CRIU images in snapshot-state/<name>, taken at the same frozen instant. */
  stateful?: boolean;
  /** Found in the storage without having been recorded (made by an older tsvz, or by hand). */
  adopted?: boolean;
  /** The storage no longer holds it (deleted behind tsvz's back): first noticed then. */
  missingSince?: string;
  /** Never removed by retention nor by `snapshot rm` (`tsvz snapshot protect`). */
  protected?: boolean;
  /** The backup schedule that made it: its retention prunes only its own snapshots. */
  schedule?: string;
}

interface CatalogFile {
  version: 1;
  snapshots: SnapshotRecord[];
}

/**
 * A container's snapshots: snapshots.json beside config.json, written
 * atomically, oldest first. Read and written under the container's lock.
 * The storage is the truth about what exists; `snapshot list` reconciles
 * this file with it (ops/snapshot.ts).
 */
export class SnapshotCatalog {
  /** `dir`: the container's directory. */
  constructor(private readonly dir: string) {}

  get file(): string {
    return path.join(this.dir, 'snapshots.json');
  }

  list(): SnapshotRecord[] {
    return readJsonIfExists<CatalogFile>(this.file)?.snapshots ?? [];
  }

  find(name: string): SnapshotRecord | undefined {
    return this.list().find((s) => s.name === name);
  }

  save(snapshots: SnapshotRecord[]): Promise<void> {
    const sorted = [...snapshots].sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.name, b.name));
    return writeJsonAtomic(this.file, { version: 1, snapshots: sorted } satisfies CatalogFile);
  }

  add(record: SnapshotRecord): Promise<void> {
    return this.save([...this.list().filter((s) => s.name !== record.name), record]);
  }

  remove(name: string): Promise<void> {
    return this.save(this.list().filter((s) => s.name !== name));
  }
}
