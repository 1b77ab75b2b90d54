import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists } from '../lib/atomic-file';
import type { ContainerConfig } from '../runtime/config';
import { Container } from '../runtime/container';
import { InvalidStateError, NotFoundError } from '../lib/errors';
import { unmountUnder } from '../lib/mounts';
import { Root } from '../lib/root';
import { DEFAULT_POOL, withStore } from '../storage';
import { creatingPrefix } from './create';
import { reconcile, releaseHostResources } from '../runtime/release';

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
    const leftovers = partialDirs(root, name);
    if (!c.exists()) {
      if (leftovers.length === 0) throw new NotFoundError(`no such container: ${name}`);
      if (!force) throw new NotFoundError(`container ${name} was only partly created`, 'use `tsvz destroy --force` to remove what is left');
      // A create killed after making the volume: its config (written first) names the pool.
      for (const pool of new Set(leftovers.map(poolOf).filter((p): p is string => p !== undefined && p !== DEFAULT_POOL))) {
        await withStore(root, pool, (store) => store.removeRootfs(name));
      }
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
  });
}

function partialDirs(root: Root, name: string): string[] {
  let entries: string[];
  try { entries = fs.readdirSync(root.containersDir); } catch { return []; }
  const prefix = creatingPrefix(name);
  // Exactly "<prefix><8 hex>": web's prefix must not match web-1's build directory.
  return entries.filter((e) => e.startsWith(prefix) && /^[0-9a-f]{8}$/.test(e.slice(prefix.length))).map((e) => path.join(root.containersDir, e));
}

function poolOf(dir: string): string | undefined {
  try {
    return readJsonIfExists<ContainerConfig>(path.join(dir, 'config.json'))?.pool;
  } catch {
    return undefined; // unreadable: no pool to look in
  }
}
