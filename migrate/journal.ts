import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { InvalidArgumentError, NotFoundError } from '../lib/errors';
import type { Root } from '../lib/root';

/**
 * A migration's phase, as each side records it before the step it names
 * (docs/migration.md has the diagram). The switch-over is the source's
 * `switching`: written once the target holds the restored copy frozen and
 * before the source's CRIU is told to kill the tree. In post-copy the
 * target's `received` (images in, no pages) comes before `restored` (its
 * copy runs, pulling pages from the frozen source), and `committed` once
 * the last page is in.
 */
export type SourcePhase = 'preparing' | 'transferring' | 'switching' | 'committed' | 'aborted';
export type TargetPhase = 'prepared' | 'receiving' | 'received' | 'restored' | 'committed' | 'aborted';
/** stop: stop-and-copy; pre: iterative pre-copy, then stop-and-copy of what changed; post: post-copy (lazy pages, docs/migration.md). */
export type MigrationMode = 'stop' | 'pre' | 'post';

export interface MigrationRecord {
  id: string;
  role: 'source' | 'target';
  /** The container, named alike on both hosts. */
  name: string;
  phase: SourcePhase | TargetPhase;
  /** stop-and-copy when absent (records of earlier versions). */
  mode?: MigrationMode;
  /** The other host: the remote's name on the source, the client's on the target. */
  peer: string;
  /** The other host's certificate fingerprint. */
  peerFingerprint?: string;
  startedAt: string;
  updatedAt: string;
  /** Why it ended in `aborted`. */
  reason?: string;
  /** The source's process driving it (pid and start time): `migrate cancel` signals it. */
  driver?: { pid: number; start: number; daemon?: boolean };
}

/** The latest report of the transfer under way (files, memory, or post-copy's pages). */
export interface MigrationProgress { what: string; bytes: number; total: number; bytesPerSec: number; done: boolean; at: string }

const ID = /^[0-9a-f]{32}$/;

export function newMigrationId(): string {
  return crypto.randomBytes(16).toString('hex');
}

/** A migration id from a peer: 32 hex characters, nothing a path could be made of. */
export function validateMigrationId(id: unknown): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new InvalidArgumentError(`invalid migration id ${JSON.stringify(String(id).slice(0, 40))}`, 'a migration id is 32 hex characters');
  return id;
}

/** The phases past which nothing is left to do on that side. */
export function isSettled(r: MigrationRecord): boolean {
  return r.phase === 'committed' || r.phase === 'aborted';
}

/** ROOT/migrations/ID.json, one per migration and side, written atomically before each step. */
export class MigrationJournal {
  readonly dir: string;

  constructor(root: Root) {
    this.dir = path.join(root.dir, 'migrations');
  }

  private file(id: string): string {
    return path.join(this.dir, `${validateMigrationId(id)}.json`);
  }

  find(id: string): MigrationRecord | undefined {
    return readJsonIfExists<MigrationRecord>(this.file(id));
  }

  /**
   * The transfer under way, for `migrate list`: beside the record (ID.progress.json),
   * so that writing it never races the phase's writes.
   */
  async noteProgress(id: string, p: MigrationProgress): Promise<void> {
    // One write at a time per migration, so that settling it (advance) can wait for the last and remove the file.
    const write = (this.progressWrites.get(id) ?? Promise.resolve()).then(() => writeJsonAtomic(this.progressFile(id), p));
    const settled = write.catch(() => undefined);
    this.progressWrites.set(id, settled);
    void settled.then(() => { if (this.progressWrites.get(id) === settled) this.progressWrites.delete(id); });
    await write;
  }

  progress(id: string): MigrationProgress | undefined {
    return readJsonIfExists<MigrationProgress>(this.progressFile(id));
  }

  private progressFile(id: string): string {
    return path.join(this.dir, `${validateMigrationId(id)}.progress.json`);
  }

  private readonly progressWrites = new Map<string, Promise<unknown>>();

  get(id: string): MigrationRecord {
    const r = this.find(id);
    if (!r) throw new NotFoundError(`no migration ${id} on this host`);
    return r;
  }

  async start(r: Omit<MigrationRecord, 'startedAt' | 'updatedAt'>): Promise<MigrationRecord> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const now = new Date().toISOString();
    const rec = { ...r, startedAt: now, updatedAt: now };
    await writeJsonAtomic(this.file(r.id), rec);
    return rec;
  }

  async advance(r: MigrationRecord, phase: MigrationRecord['phase'], reason?: string): Promise<MigrationRecord> {
    const next = { ...r, phase, updatedAt: new Date().toISOString(), ...(reason ? { reason } : {}) };
    await writeJsonAtomic(this.file(r.id), next);
    Object.assign(r, next);
    // A settled migration has no transfer under way: its progress file goes (once its last write is done).
    if (isSettled(r)) {
      await this.progressWrites.get(r.id);
      fs.rmSync(this.progressFile(r.id), { force: true });
    }
    return r;
  }

  /** Every record, newest first. */
  list(): MigrationRecord[] {
    let names: string[];
    try { names = fs.readdirSync(this.dir); } catch { return []; }
    return names
      .filter((n) => /^[0-9a-f]{32}\.json$/.test(n))
      .map((n) => readJsonIfExists<MigrationRecord>(path.join(this.dir, n)))
      .filter((r): r is MigrationRecord => r !== undefined)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /** The unsettled migration of container `name` on this side, if any. */
  inFlight(name: string, role: MigrationRecord['role']): MigrationRecord | undefined {
    return this.list().find((r) => r.name === name && r.role === role && !isSettled(r));
  }
}
