import { InvalidStateError } from '../lib/errors';
import type { Container } from '../runtime/container';
import { reconcile } from '../runtime/release';
import { ContainerState, refuseIfMigratedAway } from '../runtime/state';
import { CheckpointCatalog } from '../checkpoint/catalog';
import { restoreFrom } from '../checkpoint/restore';
import { openPoolOf } from './pool-open';
import { withContainerIntent } from './recovery';
import { lockContainer } from './recovery';

/**
 * `tsvz restore`: continue a container from a checkpoint (the one that
 * stopped it, or `id`). A failed restore leaves the checkpoint intact and
 * the container stopped and restorable.
 */
export async function restoreContainer(c: Container, id?: string, opts: { lazyPages?: boolean; force?: boolean } = {}): Promise<ContainerState> {
  const catalog = new CheckpointCatalog(c);
  return lockContainer(c, async () => {
    const current = await reconcile(c);
    if (current.status === 'running' || current.status === 'starting') {
      throw new InvalidStateError(`container ${c.name} is running`, 'stop it (or checkpoint it) first');
    }
    refuseIfMigratedAway(c.name, current, opts.force);
    const meta = catalog.get(id ?? current.checkpoint);
    // An imported checkpoint (restore --import) may come from a container of another name or root.
    if (meta.container !== c.name && !meta.importedFrom) throw new InvalidStateError(`checkpoint ${meta.id} belongs to container ${meta.container}, not ${c.name}`);
    if (meta.filesRolledBack) {
      throw new InvalidStateError(
        `checkpoint ${meta.id} of ${c.name} predates the rollback of its files to snapshot ${meta.filesRolledBack.snapshot}: its processes would find other files`,
        `start ${c.name} afresh, or remove the checkpoint (\`tsvz checkpoint rm ${c.name} ${meta.id}\`)`,
      );
    }
    await openPoolOf(c);
    return withContainerIntent(c, 'restore', { checkpoint: meta.id }, (intent) => restoreFrom(c, current, catalog, meta, { intent, lazyPages: opts.lazyPages }));
  });
}
