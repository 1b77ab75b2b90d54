import fs = require('node:fs');
import { Container } from '../runtime/container';
import { InvalidStateError, NotFoundError } from '../lib/errors';
import { unmountUnder } from '../lib/mounts';
import { Root } from '../lib/root';
import { DEFAULT_POOL, withStore } from '../storage';
import { partialDirs, removePartials } from './building';
import { reconcile, releaseHostResources } from '../runtime/release';
import { recoverContainer } from './recovery';

/**
 * Remove a container and everything it holds on the host, its volume and
 * the volume's snapshots included. A running one needs --force (which kills
 * it). --force also removes what a CLI killed mid-create or mid-start left
 * behind (a volume too), so it always succeeds in the end. A volume that
 * can't be deleted fails the destroy and leaves the container in place.
 */
export async function destroyContainer(root: Root, name: string, force = false): Promise<void> {
  root.ensure();
  const c = new Container(root, name);
  await c.locked(async () => {
    // What killed operations left is finished or undone first; with --force a recovery that fails does not stop the destroy.
    try {
      await recoverContainer(c);
    } catch (err) {
      if (!force) throw err;
    }
    const leftovers = partialDirs(root, name);
    if (!c.exists()) {
      if (leftovers.length === 0) throw new NotFoundError(`no such container: ${name}`);
      if (!force) throw new NotFoundError(`container ${name} was only partly created`, 'use `tsvz destroy --force` to remove what is left');
      await removePartials(root, name);
      return;
    } else {
      const state = force ? c.state() : await reconcile(c);
      if (!force && (state.status === 'running' || state.status === 'starting')) {
        throw new InvalidStateError(`container ${name} is running`, 'stop it first or use --force');
      }
      await releaseHostResources(c);
      if (c.config.pool !== DEFAULT_POOL) await withStore(root, c.config.pool, (store) => store.removeRootfs(name));
      leftovers.push(c.paths.dir);
    }
    for (const dir of leftovers) {
      await unmountUnder(dir);
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
    await fs.promises.rm(root.intentsDir('containers', name), { recursive: true, force: true });
  });
}
