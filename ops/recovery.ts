import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists } from '../lib/atomic-file';
import { InvalidArgumentError } from '../lib/errors';
import { Intent, IntentRecord, IntentStep, pendingIntents, recoverIntents, RecoveryHandlers, withIntent, writerAlive } from '../lib/intent';
import { unmountUnder } from '../lib/mounts';
import { pollUntil } from '../lib/poll';
import { isSameProcess } from '../lib/proc';
import type { Root } from '../lib/root';
import type { ContainerConfig } from '../runtime/config';
import { thawAll } from '../runtime/cgroups/freezer';
import { removeRestoreStage } from '../runtime/restore-stage';
import { Container } from '../runtime/container';
import { reconcile, releaseHostResources } from '../runtime/release';
import { ContainerState, writeState } from '../runtime/state';
import { CheckpointCatalog, CheckpointMeta, directorySize } from '../checkpoint/catalog';
import { abandonPool, PoolCatalog, SnapshotCatalog, withStore } from '../storage';
import type { PoolSpec } from '../storage';

/**
 * What the verbs do to finish or undo an operation a killed process left
 * half-done (lib/intent.ts journals), and the one way ops take a
 * container's lock: take it, then recover what an earlier holder left, then
 * act. A journal's steps name only paths under the root and objects of the
 * container or pool the journal belongs to: recovery checks that before it
 * removes or unmounts anything.
 */

function underRoot(root: Root, p: unknown): string {
  if (typeof p !== 'string') throw new InvalidArgumentError('journal step without a path');
  const resolved = path.resolve(p);
  if (!resolved.startsWith(`${root.dir}${path.sep}`)) throw new InvalidArgumentError(`journal step names ${resolved}, outside ${root.dir}`);
  return resolved;
}

/** How long recovery lets a CRIU left by a killed tsvz end by itself (it resumes the tree on its own) before killing it. */
const CHILD_EXIT_WAIT_MS = 120_000;

/** Wait for a process a killed operation left (CRIU) to end; kill it past the wait. True if it had to be killed. */
async function waitExit(step: IntentStep): Promise<boolean> {
  const pid = Number(step.pid);
  const start = Number(step.startTime);
  const gone = () => !isSameProcess(pid, start);
  if (await pollUntil(gone, { timeoutMs: CHILD_EXIT_WAIT_MS, maxMs: 50 })) return false;
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
  await pollUntil(gone, { timeoutMs: 5_000 });
  return true;
}

function containerHandlers(c: Container): RecoveryHandlers {
  const waitAll = async (record: IntentRecord) => {
    for (const step of record.undo.filter((s) => s.kind === 'wait-exit')) await waitExit(step);
  };
  return {
    undo: {
      'wait-exit': async (step) => {
        // A CRIU killed mid-dump leaves the tree in its freezer.
        if ((await waitExit(step)) && step.thawIfKilled) await thawAll(c.cgroups());
      },
      remove: async (step) => { await fs.promises.rm(underRoot(c.root, step.path), { recursive: true, force: true }); },
      unmount: async (step) => { await unmountUnder(underRoot(c.root, step.path)); },
      kill: async (step) => {
        const pid = Number(step.pid);
        if (isSameProcess(pid, Number(step.startTime))) process.kill(pid, 'SIGKILL');
      },
      release: async () => { await releaseHostResources(c); },
      thaw: async () => { await thawAll(c.cgroups()); },
      // The restore's /dev and idmapped root, outside the root (runtime/restore-stage.ts).
      'restore-stage': async () => { await removeRestoreStage(c.key); },
      state: async (step) => { await writeState(c.paths, step.state as ContainerState); },
      // Files being replaced (a backup restored over the container): back to the snapshot taken first, which then goes.
      'rollback-snapshot': async (step) => {
        const snap = String(step.snapshot);
        await withStore(c.root, c.config.pool, async (store) => {
          if (!(await store.listSnapshots(c.name)).some((s) => s.name === snap)) return;
          await store.rollback(c.name, snap);
          await store.deleteSnapshot(c.name, snap);
        });
      },
      'delete-snapshot': async (step) => {
        const snap = String(step.snapshot);
        await withStore(c.root, c.config.pool, async (store) => {
          if ((await store.listSnapshots(c.name)).some((s) => s.name === snap)) await store.deleteSnapshot(c.name, snap);
        });
      },
    },
    finish: {
      // The restored container runs (its state says so): only the staging of its /dev may be left.
      restore: async () => { await removeRestoreStage(c.key); },
      // CRIU wrote every image (the post-dump notification came): the checkpoint is the container's state now.
      // If tsvz died while CRIU waited on it at post-dump, CRIU resumed the tree: then it is a checkpoint that kept running.
      checkpoint: async (record) => {
        await waitAll(record); // CRIU may still be killing (or resuming) the tree
        const d = record.data as { id: string; leaveRunning: boolean; meta: Partial<CheckpointMeta> };
        const catalog = new CheckpointCatalog(c);
        const dir = catalog.dir(d.id);
        const leaveRunning = d.leaveRunning || c.state().status === 'running';
        if (!readJsonIfExists(path.join(dir, 'checkpoint.json'))) {
          await catalog.save({ ...(d.meta as CheckpointMeta), id: d.id, container: c.name, createdAt: record.startedAt, leaveRunning, dumpMs: 0, sizeBytes: directorySize(dir) });
        }
        if (!leaveRunning) await reconcile(c, { checkpoint: d.id });
      },
      'stateful-snapshot': async (record) => {
        await waitAll(record);
        const d = record.data as { snapshot: string; pool: string; handle: string; createdAt: string; meta: Partial<CheckpointMeta> };
        const state = new CheckpointCatalog(c, 'snapshot-state');
        const dir = state.dir(d.snapshot);
        if (!readJsonIfExists(path.join(dir, 'checkpoint.json'))) {
          await state.save({ ...(d.meta as CheckpointMeta), id: d.snapshot, container: c.name, createdAt: d.createdAt, leaveRunning: true, dumpMs: 0, sizeBytes: directorySize(dir) });
        }
        const catalog = new SnapshotCatalog(c.paths.dir);
        if (!catalog.find(d.snapshot)) await catalog.add({ name: d.snapshot, createdAt: d.createdAt, pool: d.pool, handle: d.handle, stateful: true });
        // It froze the container itself (a thaw step says so): it was killed before thawing.
        if (record.undo.some((s) => s.kind === 'thaw')) await thawAll(c.cgroups());
      },
    },
  };
}

/** Finish or undo what killed operations on `c` left (the caller holds its lock). */
export async function recoverContainer(c: Container): Promise<string[]> {
  const dir = c.root.intentsDir('containers', c.name);
  if (!fs.existsSync(dir)) return [];
  if (!c.exists()) {
    // The container is gone (destroyed by an older tsvz, or by hand): nothing of its journals can apply.
    await fs.promises.rm(dir, { recursive: true, force: true });
    return [];
  }
  return recoverIntents(dir, containerHandlers(c));
}

/**
 * Run `body` holding `c`'s lock, after recovering what an interrupted
 * operation on it left: the one way a verb takes a container's lock.
 */
export function lockContainer<T>(c: Container, body: () => Promise<T>, opts: { waitMs?: number } = {}): Promise<T> {
  return c.locked(async () => {
    await recoverContainer(c);
    return body();
  }, opts.waitMs);
}

/** Run `body` under a journal of operation `op` on container `c` (see lib/intent.ts). */
export function withContainerIntent<T>(c: Container, op: string, data: Record<string, unknown>, body: (intent: Intent) => Promise<T>): Promise<T> {
  return withIntent(c.root.intentsDir('containers', c.name), op, data, containerHandlers(c), body);
}

// ---------------------------------------------------------------- pools

function poolHandlers(root: Root): RecoveryHandlers {
  const catalog = new PoolCatalog(root);
  return {
    undo: {
      // A pool whose creation was killed: the driver removes what its create makes (image, loop device, mount, zpool).
      'abandon-pool': async (step) => {
        const spec = step.spec as PoolSpec;
        if (catalog.find(spec.name)) return; // it was recorded after all: a pool, not a leftover
        await abandonPool({ ...spec, rootDir: root.dir });
      },
    },
  };
}

/** Finish or undo what killed `pool create`/`pool rm` left of pool `name` (the caller holds its lock alone). */
export async function recoverPool(root: Root, name: string): Promise<string[]> {
  const dir = root.intentsDir('pools', name);
  if (!fs.existsSync(dir)) return [];
  return recoverIntents(dir, poolHandlers(root));
}

export function withPoolIntent<T>(root: Root, name: string, op: string, data: Record<string, unknown>, body: (intent: Intent) => Promise<T>): Promise<T> {
  return withIntent(root.intentsDir('pools', name), op, data, poolHandlers(root), body);
}

// ---------------------------------------------------------------- doctor

export interface Leftover {
  what: string;
  detail: string;
}

/** Journals and half-made containers left by killed operations, for `tsvz doctor` (nothing is changed). */
export function listLeftovers(root: Root): Leftover[] {
  const out: Leftover[] = [];
  for (const scope of ['containers', 'pools'] as const) {
    let names: string[] = [];
    try { names = fs.readdirSync(path.join(root.dir, 'intents', scope)); } catch { /* none */ }
    for (const name of names) {
      for (const { record } of pendingIntents(root.intentsDir(scope, name))) {
        if (writerAlive(record)) continue; // an operation still running
        out.push({ what: `${scope === 'containers' ? 'container' : 'pool'} ${name}`, detail: describeIntent(record) });
      }
    }
  }
  let entries: string[] = [];
  try { entries = fs.readdirSync(root.containersDir); } catch { /* none */ }
  for (const e of entries.filter((n) => n.startsWith('.creating-'))) {
    const cfg = readJsonIfExists<ContainerConfig>(path.join(root.containersDir, e, 'config.json'));
    out.push({ what: `container ${cfg?.name ?? e}`, detail: `half-created (${e}); \`tsvz destroy --force\` or \`tsvz create\` of that name removes it` });
  }
  return out;
}

function describeIntent(record: IntentRecord): string {
  const steps = record.undo.map((s: IntentStep) => s.kind).join(', ');
  return `interrupted ${record.op} (pid ${record.pid}, ${record.startedAt})${record.reached ? `, past ${record.reached}: the next command finishes it` : `: the next command undoes ${steps || 'it'}`}`;
}
