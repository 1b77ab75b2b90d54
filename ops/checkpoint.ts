import { InvalidStateError } from '../lib/errors';
import type { Container } from '../runtime/container';
import { reconcile } from '../runtime/release';
import { CheckpointCatalog, CheckpointMeta } from '../checkpoint/catalog';
import { CheckpointOptions, dumpContainer } from '../checkpoint/dump';
import { CheckpointInspection, inspectCheckpoint } from '../checkpoint/images';

/**
 * `tsvz checkpoint`: dump a running container with CRIU (vzctl chkpnt).
 * Without leaveRunning it is stopped and `restore` continues it; a failed
 * dump leaves it running.
 */
export async function checkpointContainer(c: Container, opts: CheckpointOptions = {}): Promise<CheckpointMeta> {
  return c.locked(async () => {
    const state = await reconcile(c);
    if (state.status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
    return dumpContainer(c, state, new CheckpointCatalog(c), opts);
  });
}

/** `tsvz checkpoint list`. */
export function listCheckpoints(c: Container): CheckpointMeta[] {
  return new CheckpointCatalog(c).list();
}

/** `tsvz checkpoint inspect`: what CRIU's images of a checkpoint (the newest when no id) hold. */
export function inspectCheckpointOf(c: Container, id?: string): { meta: CheckpointMeta; report: CheckpointInspection } {
  const catalog = new CheckpointCatalog(c);
  const meta = catalog.get(id);
  return { meta, report: inspectCheckpoint(catalog.dir(meta.id)) };
}

/** `tsvz checkpoint rm`: under the lock, so a restore from it never sees it half-removed. */
export async function removeCheckpoint(c: Container, id: string): Promise<void> {
  await c.locked(async () => new CheckpointCatalog(c).remove(id));
}
