import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from './atomic-file';
import { addCleanupFailures, SystemError } from './errors';
import { processStartTime } from './proc';

/**
 * Crash safety for multi-step operations: a write-ahead intent. Before an
 * operation makes something outside its final place (an image directory, a
 * loop device, a mount, a staging copy), it records how to undo it, durably,
 * in a journal beside the lock that serialises it. Success removes the
 * journal; a failure undoes the steps in reverse (in process, as withUndo
 * does) and removes it; a process killed half-way leaves it, and the next
 * command that takes the same lock recovers: it finishes the operation
 * when the journal says it reached the point of no return (`reached`),
 * otherwise it undoes every recorded step. `destroy --force` and `pool rm
 * --force` recover first too, and `tsvz doctor` lists journals left over.
 *
 * Steps are data (`{kind, ...}`), not closures, so another process can run
 * them; what each kind does is given by the caller's handlers (a lower layer
 * cannot know how to detach a loop device or record a checkpoint).
 */

export interface IntentStep {
  kind: string;
  [field: string]: unknown;
}

export interface IntentRecord {
  version: 1;
  /** The operation, e.g. "checkpoint" or "pool-create". */
  op: string;
  /** The process that wrote it, with its start time (a reused pid is not it). */
  pid: number;
  pidStart?: number;
  startedAt: string;
  /** Operation data recovery needs (ids, names, options). */
  data: Record<string, unknown>;
  /** Undo steps, in the order they were taken. */
  undo: IntentStep[];
  /** Set once the operation passed its point of no return: recovery finishes it. */
  reached?: string;
}

/** What recovery runs: the undo of each step kind, and how to finish each operation. */
export interface RecoveryHandlers {
  undo: Record<string, (step: IntentStep, record: IntentRecord) => Promise<void>>;
  /** op -> finish, for a journal with `reached` set. */
  finish?: Record<string, (record: IntentRecord) => Promise<void>>;
}

let journals = 0;

export class Intent {
  private constructor(readonly file: string, private readonly record: IntentRecord, private readonly handlers: RecoveryHandlers) {}

  /** Start a journal for `op` in `dir` (made if missing), durably. */
  static async begin(dir: string, op: string, data: Record<string, unknown>, handlers: RecoveryHandlers): Promise<Intent> {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, `${op}-${process.pid}-${Date.now()}-${++journals}.json`);
    const record: IntentRecord = {
      version: 1, op, pid: process.pid, pidStart: processStartTime(process.pid), startedAt: new Date().toISOString(), data, undo: [],
    };
    const intent = new Intent(file, record, handlers);
    await intent.persist();
    return intent;
  }

  get data(): Record<string, unknown> {
    return this.record.data;
  }

  /** Record how to undo the step about to be taken; durable before it is taken. */
  async will(step: IntentStep): Promise<void> {
    this.record.undo.push(step);
    await this.persist();
  }

  /**
   * Record a step already taken whose undo only matters if this process
   * dies (a child's pid): written without fsync, which guards against a kill.
   */
  willNow(step: IntentStep): void {
    this.record.undo.push(step);
    this.writeFast();
  }

  /** Add to the operation's data (what a finish needs), durably. */
  async note(data: Record<string, unknown>): Promise<void> {
    Object.assign(this.record.data, data);
    await this.persist();
  }

  /**
   * The point of no return: from here a recovery finishes the operation. The
   * write is not fsynced: it guards against the process being killed (the
   * page cache survives that), and it may sit inside a frozen window.
   */
  reach(point: string | undefined, data: Record<string, unknown> = {}): void {
    this.record.reached = point;
    Object.assign(this.record.data, data);
    this.writeFast();
  }

  private writeFast(): void {
    const tmp = `${this.file}.fast`;
    fs.writeFileSync(tmp, JSON.stringify(this.record));
    fs.renameSync(tmp, this.file);
  }

  /** The point of no return passed, if it did. */
  get reached(): string | undefined {
    return this.record.reached;
  }

  /** Past the point of no return, a failure finishes the operation instead of undoing it; kept for the next command if that fails too. */
  async finishOrKeep(): Promise<string[]> {
    const finish = this.handlers.finish?.[this.record.op];
    if (!finish) return [`no way to finish ${this.record.op}: kept for the next command`];
    try {
      await finish(this.record);
    } catch (err) {
      return [`finish ${this.record.op}: ${(err as Error).message} (kept for the next command)`];
    }
    await this.done();
    return [];
  }

  /** The operation is done: nothing to undo. */
  async done(): Promise<void> {
    await fs.promises.rm(this.file, { force: true });
  }

  /** Undo every recorded step in reverse, then drop the journal; returns the steps that failed. */
  async unwind(): Promise<string[]> {
    const failed = await undoSteps(this.record, this.handlers);
    await this.done();
    return failed;
  }

  private persist(): Promise<void> {
    return writeJsonAtomic(this.file, this.record);
  }
}

/**
 * Run `body` under a journal: on success it is removed; on failure its steps
 * are undone in reverse (failures of that recorded on the error) and it is
 * removed; if the process dies, it stays for recoverIntents().
 */
export async function withIntent<T>(dir: string, op: string, data: Record<string, unknown>, handlers: RecoveryHandlers, body: (intent: Intent) => Promise<T>): Promise<T> {
  const intent = await Intent.begin(dir, op, data, handlers);
  let result: T;
  try {
    result = await body(intent);
  } catch (err) {
    addCleanupFailures(err, intent.reached ? await intent.finishOrKeep() : await intent.unwind());
    throw err;
  }
  await intent.done();
  return result;
}

/** Journals in `dir` whose writer is gone (every one, when the caller holds the lock they belong to). */
export function pendingIntents(dir: string): { file: string; record: IntentRecord }[] {
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  const out: { file: string; record: IntentRecord }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const file = path.join(dir, name);
    let record: IntentRecord | undefined;
    try { record = readJsonIfExists<IntentRecord>(file); } catch { record = undefined; }
    if (!record || record.version !== 1 || !Array.isArray(record.undo)) {
      out.push({ file, record: { version: 1, op: 'unreadable', pid: 0, startedAt: '', data: {}, undo: [] } });
      continue;
    }
    out.push({ file, record });
  }
  return out;
}

/** Is the journal's writer still running (this process, or another live one)? */
export function writerAlive(record: IntentRecord): boolean {
  return record.pidStart !== undefined && processStartTime(record.pid) === record.pidStart;
}

/**
 * Finish or undo what killed operations left in `dir`. The caller holds the
 * lock those operations held; journals of this process (another call still
 * running here) and of live processes are left alone. Returns one line per
 * journal recovered, and throws (after trying them all) if any step failed.
 */
export async function recoverIntents(dir: string, handlers: RecoveryHandlers): Promise<string[]> {
  const done: string[] = [];
  const failed: string[] = [];
  await removeTornWrites(dir);
  for (const { file, record } of pendingIntents(dir)) {
    if (record.op !== 'unreadable' && writerAlive(record)) continue;
    const finish = record.reached ? handlers.finish?.[record.op] : undefined;
    try {
      if (finish) {
        await finish(record);
        done.push(`finished an interrupted ${record.op}`);
      } else {
        const stepFailures = await undoSteps(record, handlers);
        if (stepFailures.length > 0) {
          failed.push(...stepFailures.map((f) => `${record.op}: ${f}`));
          continue; // kept: the next recovery tries again
        }
        done.push(`undid an interrupted ${record.op}`);
      }
      await fs.promises.rm(file, { force: true });
    } catch (err) {
      failed.push(`${record.op}: ${(err as Error).message}`);
    }
  }
  if (failed.length > 0) {
    throw new SystemError(`cannot recover what an interrupted operation left: ${failed.join('; ')}`);
  }
  return done;
}

/**
 * Temp files of journal writes a killed process left (its atomic write's
 * temp, its fast rewrite's): garbage, since the caller holds the lock every
 * writer of this directory holds. Those of this process are writes in flight.
 */
async function removeTornWrites(dir: string): Promise<void> {
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return; }
  for (const name of names.filter((n) => !n.endsWith('.json'))) {
    const writer = /-(\d+)-\d+-\d+\.json/.exec(name)?.[1];
    if (writer !== undefined && Number(writer) !== process.pid) await fs.promises.rm(path.join(dir, name), { force: true });
  }
}

async function undoSteps(record: IntentRecord, handlers: RecoveryHandlers): Promise<string[]> {
  const failed: string[] = [];
  for (const step of [...record.undo].reverse()) {
    const handler = handlers.undo[step.kind];
    try {
      if (!handler) throw new Error(`no undo for step "${step.kind}"`);
      await handler(step, record);
    } catch (err) {
      failed.push(`${step.kind}: ${(err as Error).message}`);
    }
  }
  return failed;
}
