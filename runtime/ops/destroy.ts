import * as fs from 'node:fs';
import * as path from 'node:path';
import { Container } from '../container';
import { InvalidStateError, NotFoundError } from '../errors';
import { unmountUnder } from '../mounts';
import { Root } from '../paths';
import { creatingPrefix } from './create';
import { reconcile, releaseHostResources } from './release';

/**
 * Remove a container and everything it holds on the host. A running one
 * needs --force (which kills it). --force also removes what a CLI killed
 * mid-create or mid-start left behind, so it always succeeds in the end.
 */
export async function destroyContainer(root: Root, name: string, force = false): Promise<void> {
  root.ensure();
  const c = new Container(root, name);
  await c.locked(async () => {
    const leftovers = partialDirs(root, name);
    if (!c.exists()) {
      if (leftovers.length === 0) throw new NotFoundError(`no such container: ${name}`);
      if (!force) throw new NotFoundError(`container ${name} was only partly created`, 'use `tsvz destroy --force` to remove what is left');
    } else {
      const state = force ? c.state() : reconcile(c);
      if (!force && (state.status === 'running' || state.status === 'starting')) {
        throw new InvalidStateError(`container ${name} is running`, 'stop it first or use --force');
      }
      releaseHostResources(c);
      leftovers.push(c.paths.dir);
    }
    for (const dir of leftovers) {
      unmountUnder(dir);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

function partialDirs(root: Root, name: string): string[] {
  let entries: string[];
  try { entries = fs.readdirSync(root.containersDir); } catch { return []; }
  return entries.filter((e) => e.startsWith(creatingPrefix(name))).map((e) => path.join(root.containersDir, e));
}
