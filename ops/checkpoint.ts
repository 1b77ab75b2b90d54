import { AlreadyExistsError, InvalidStateError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { Container } from '../runtime/container';
import { reconcile } from '../runtime/release';
import { CheckpointCatalog, CheckpointMeta, newCheckpointId } from '../checkpoint/catalog';
import { CheckpointOptions, dumpContainer } from '../checkpoint/dump';
import { CheckpointInspection, inspectCheckpoint } from '../checkpoint/images';
import { lockContainer, withContainerIntent } from './recovery';

/**
 * `tsvz checkpoint`: dump a running container with CRIU (vzctl chkpnt).
 * Without leaveRunning it is stopped and `restore` continues it; a failed
 * dump leaves it running. A tsvz killed during the dump leaves a journal:
 * the next command on the container removes the partial images, or, if
 * CRIU had written them all, records the checkpoint.
 */
export async function checkpointContainer(c: Container, opts: Omit<CheckpointOptions, 'intent'> = {}): Promise<CheckpointMeta> {
  return lockContainer(c, async () => {
    const state = await reconcile(c);
    if (state.status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
    const id = validateName(opts.name ?? newCheckpointId(), 'checkpoint');
    const catalog = new CheckpointCatalog(c);
    if (catalog.hasDir(id)) throw new AlreadyExistsError(`container ${c.name} already has a checkpoint "${id}"`);
    return withContainerIntent(c, 'checkpoint', { id, leaveRunning: opts.leaveRunning === true }, (intent) =>
      dumpContainer(c, state, catalog, { ...opts, name: id, intent }));
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
  await lockContainer(c, () => new CheckpointCatalog(c).remove(id));
}
