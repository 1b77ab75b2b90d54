import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import type { ContainerConfig } from '../runtime/config';
import { Container } from '../runtime/container';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { validateName } from '../lib/names';
import { Root } from '../lib/root';
import { ContainerPaths } from '../runtime/paths';
import { writeState } from '../runtime/state';
import { validateSnapshotName, withStore } from '../storage';
import { withUndo } from '../lib/undo';
import { resolveNet } from './create';
import { creatingPrefix } from './building';
import { reconcile } from '../runtime/release';
import { consistently } from './consistent';
import { removePartials } from './building';
import { lockContainer } from './recovery';
import { faultPoint } from '../lib/fault';
import { withNewIdMap } from '../runtime/idmap';
import { shiftOwnership } from '../runtime/rootfs-owner';

export interface CloneOptions {
  /** Clone this snapshot of the source (default: its current state). */
  snapshot?: string;
  /** The clone's own address when the source is on a bridge (two containers can't share one). */
  ip?: string;
}

/**
 * A new container `dst` like `src` (same template, init, limits, pool) whose
 * rootfs is a clone of src's snapshot or of its current state: copy-on-write
 * where the pool's driver can (btrfs, zfs, lvm), a full copy where it can't
 * (dir). Built like create, in a hidden directory renamed into place; any
 * failure (a full pool) deletes the half-made volume. A running source is
 * fine: cloned atomically, or frozen around the copy.
 */
export async function cloneContainer(root: Root, srcName: string, dstName: string, opts: CloneOptions = {}): Promise<ContainerConfig> {
  validateName(dstName);
  const snap = opts.snapshot === undefined ? undefined : validateSnapshotName(opts.snapshot);
  root.ensure();
  const src = Container.open(root, srcName);
  if (dstName === srcName) throw new AlreadyExistsError(`container ${dstName} already exists`);
  const dst = new Container(root, dstName);
  return lockContainer(src, () => lockContainer(dst, async () => {
    if (dst.exists()) throw new AlreadyExistsError(`container ${dstName} already exists`);
    await removePartials(root, dstName);
    const cfg = src.config;
    const net = await cloneNet(cfg, opts.ip);
    const running = (await reconcile(src)).status === 'running';
    return withStore(root, cfg.pool, (store) => withUndo(async (undo) => {
      if (snap !== undefined && !(await store.listSnapshots(srcName)).some((s) => s.name === snap)) {
        throw new NotFoundError(`container ${srcName} has no snapshot "${snap}"`, `see \`tsvz snapshot list ${srcName}\``);
      }
      const building = path.join(root.containersDir, `${creatingPrefix(dstName)}${crypto.randomBytes(4).toString('hex')}`);
      fs.mkdirSync(building, { mode: 0o700 });
      undo.add('remove partial container', () => fs.rmSync(building, { recursive: true, force: true }));
      const paths = new ContainerPaths(building);
      const config: ContainerConfig = {
        ...cfg,
        name: dstName,
        hostname: cfg.hostname === srcName ? dstName : cfg.hostname,
        net,
        createdAt: new Date().toISOString(),
        origin: snap === undefined ? { container: srcName } : { container: srcName, snapshot: snap },
      };
      // First: it names the pool for `destroy --force`. A clone gets a range of its own (or the shared one, as its source).
      if (cfg.idmap) {
        await withNewIdMap(root, { shared: cfg.idmap.shared === true, rootfs: cfg.idmap.rootfs }, async (idmap) => {
          config.idmap = idmap;
          await writeJsonAtomic(paths.config, config);
        });
      } else {
        await writeJsonAtomic(paths.config, config);
      }
      const rootfs = await consistently(src, store, running && snap === undefined, () => store.cloneRootfs(srcName, snap, dstName, building, undo));
      // An idmapped rootfs is owned by 0.. on disk whatever the range; a shifted one moves to the clone's.
      if (cfg.idmap?.rootfs === 'shifted' && config.idmap) await shiftOwnership(rootfs, cfg.idmap, config.idmap, config.idmap.size);
      await faultPoint('clone:copied');
      await writeState(paths, { status: 'created' });
      fs.renameSync(building, dst.paths.dir);
      return config;
    }));
  }));
}

async function cloneNet(cfg: ContainerConfig, ip?: string): Promise<ContainerConfig['net']> {
  if (cfg.net.mode === 'none') {
    if (ip !== undefined) throw new InvalidArgumentError(`--ip: ${cfg.name} has no bridge network (--net none)`);
    return cfg.net;
  }
  if (ip === undefined) {
    throw new InvalidArgumentError(`${cfg.name} is on bridge ${cfg.net.bridge} with address ${cfg.net.address}: the clone needs its own`, 'give one with --ip, e.g. --ip 198.18.0.11/15');
  }
  return resolveNet({ mode: 'bridge', address: ip, bridge: cfg.net.bridge });
}

/** Containers cloned from `container`'s snapshot `snap`. */
export function clonesOf(root: Root, container: string, snap: string): string[] {
  let names: string[];
  try { names = fs.readdirSync(root.containersDir); } catch { return []; }
  return names
    .filter((n) => !n.startsWith('.'))
    .filter((n) => {
      const cfg = readJsonIfExists<ContainerConfig>(path.join(root.containerDir(n), 'config.json'));
      return cfg?.origin?.container === container && cfg.origin.snapshot === snap;
    })
    .sort();
}
