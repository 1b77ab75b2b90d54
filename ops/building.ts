import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists } from '../lib/atomic-file';
import { unmountUnder } from '../lib/mounts';
import type { Root } from '../lib/root';
import type { ContainerConfig } from '../runtime/config';
import { DEFAULT_POOL, withStore } from '../storage';

/*
 * A container is built in a hidden directory, ROOT/containers/.creating-NAME-<8 hex>,
 * and renamed into place when complete (create, clone, import): it is
 * either whole or not there. A build that was killed leaves its directory
 * (and maybe a volume), which the next create, clone or destroy --force of
 * that name removes.
 */

/** Prefix of the directory a container is built in before it is renamed into place. */
export function creatingPrefix(name: string): string {
  return `.creating-${name}-`;
}

/**
 * Remove what a create or clone of `name` that was killed left: its hidden
 * build directories and the volume its config (written first) names. The
 * caller holds the lock of `name`, so none of them is still being built.
 */
export async function removePartials(root: Root, name: string): Promise<number> {
  const dirs = partialDirs(root, name);
  for (const pool of new Set(dirs.map(poolOf).filter((p): p is string => p !== undefined && p !== DEFAULT_POOL))) {
    await withStore(root, pool, (store) => store.removeRootfs(name));
  }
  for (const dir of dirs) {
    await unmountUnder(dir);
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
  return dirs.length;
}

export function partialDirs(root: Root, name: string): string[] {
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
