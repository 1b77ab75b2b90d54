import fs = require('node:fs');
import path = require('node:path');
import { AtomicFileSlot, jsonText, readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import type { Container } from '../runtime/container';
import { InvalidStateError, NotFoundError } from '../lib/errors';
import { validateName } from '../lib/names';
import { compareText } from '../lib/compare';

/** What `checkpoint list` shows; stored beside the images as checkpoint.json. */
export interface CheckpointMeta {
  id: string;
  container: string;
  createdAt: string;
  criuVersion: string;
  kernel: string;
  /** The container kept running after the dump. */
  leaveRunning: boolean;
  tcpEstablished: boolean;
  /** Made by an older tsvz, which left a --net none network namespace out of the dump: restore makes it anew. */
  emptyNetns?: boolean;
  /** Wall time of the dump, ms (the container was frozen for at most this long). */
  dumpMs: number;
  /** Bytes of image files. */
  sizeBytes: number;
  /** From CRIU's stats-dump: how long the tree was frozen, dumped and written, ms. */
  frozenMs?: number;
  memdumpMs?: number;
  memwriteMs?: number;
  /** Pages CRIU wrote to the images. */
  pagesWritten?: number;
  /** Set when the checkpoint came in through `restore --import` (container names the source). */
  importedFrom?: { archive: string; importedAt: string };
  /**
   * The container's files were rolled back to a snapshot after this dump:
   * its processes would find other files than they had open, so it is not restored.
   */
  filesRolledBack?: { snapshot: string; at: string };
}

const META = 'checkpoint.json';

/** Checkpoints live in the container's directory: checkpoints/<id>/ holds CRIU's images, its logs and the metadata. */
export class CheckpointCatalog {
  /** `subdir`: checkpoints/ for `tsvz checkpoint`; snapshot-state/ holds the memory of stateful snapshots. */
  constructor(private readonly container: Container, private readonly subdir = 'checkpoints') {}

  get root(): string {
    return path.join(this.container.paths.dir, this.subdir);
  }

  dir(id: string): string {
    return path.join(this.root, validateName(id, 'checkpoint'));
  }

  /** Complete checkpoints, oldest first (a dump in progress has no metadata yet). */
  list(): CheckpointMeta[] {
    let ids: string[];
    try { ids = fs.readdirSync(this.root); } catch { return []; }
    return ids
      .map((id) => readJsonIfExists<CheckpointMeta>(path.join(this.root, id, META)))
      .filter((m): m is CheckpointMeta => m !== undefined)
      .sort((a, b) => compareText(a.createdAt, b.createdAt));
  }

  get(id?: string): CheckpointMeta {
    if (id === undefined) {
      const all = this.list();
      if (all.length === 0) throw new NotFoundError(`container ${this.container.name} has no checkpoint`, `take one with \`tsvz checkpoint ${this.container.name}\``);
      return all[all.length - 1];
    }
    const meta = readJsonIfExists<CheckpointMeta>(path.join(this.dir(id), META));
    if (!meta) throw new NotFoundError(`container ${this.container.name} has no checkpoint "${id}"`, `see \`tsvz checkpoint list ${this.container.name}\``);
    return meta;
  }

  /**
   * A record's file made durable before the dump writes its images
   * (AtomicFileSlot): the caller commits it with saveInto(), or discards it.
   */
  prepareSave(id: string): Promise<AtomicFileSlot> {
    return AtomicFileSlot.prepare(path.join(this.dir(id), META));
  }

  saveInto(slot: AtomicFileSlot, meta: CheckpointMeta): Promise<void> {
    return slot.commit(jsonText(meta));
  }

  save(meta: CheckpointMeta): Promise<void> {
    return writeJsonAtomic(path.join(this.dir(meta.id), META), meta);
  }

  /** After a rollback of the container's files to `snapshot`: no checkpoint matches them any more. */
  async markFilesRolledBack(snapshot: string): Promise<string[]> {
    const at = new Date().toISOString();
    const marked: string[] = [];
    for (const meta of this.list()) {
      if (meta.filesRolledBack) continue;
      await this.save({ ...meta, filesRolledBack: { snapshot, at } });
      marked.push(meta.id);
    }
    return marked;
  }

  /** The rollback did not happen after all: the checkpoints `ids` match the files again. */
  async unmarkFilesRolledBack(ids: string[]): Promise<void> {
    for (const meta of this.list()) {
      if (!ids.includes(meta.id) || !meta.filesRolledBack) continue;
      const { filesRolledBack: _undone, ...rest } = meta;
      await this.save(rest);
    }
  }

  async remove(id: string): Promise<void> {
    this.get(id);
    if (this.subdir === 'checkpoints' && this.container.recordedState().checkpoint === id) {
      throw new InvalidStateError(`checkpoint ${id} is where container ${this.container.name} stopped`, `restore it first (\`tsvz restore ${this.container.name}\`), or destroy the container`);
    }
    await fs.promises.rm(this.dir(id), { recursive: true, force: true });
  }

  /** Is there a directory for `id`, complete or not (a dump killed half-way leaves one)? */
  hasDir(id: string): boolean {
    return fs.existsSync(this.dir(id));
  }
}

/** A new checkpoint id: sortable, readable, valid as a name (e.g. 20261123-153000-123). */
export function newCheckpointId(now = new Date()): string {
  return now.toISOString().replace(/[-:]/g, '').replace('T', '-').replace('.', '-').replace('Z', '');
}

export function directorySize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? directorySize(p) : fs.lstatSync(p).size;
  }
  return total;
}
