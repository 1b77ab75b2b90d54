import fs = require('node:fs');
import path = require('node:path');
import type { Container } from '../runtime/container';
import { criuBinary } from './criu/binary';
import { InvalidStateError, NotSupportedError } from '../lib/errors';
import { loopbackUp } from '../runtime/loopback';
import { MonitorRestore } from '../runtime/monitor';
import { releaseHostResources } from '../runtime/release';
import { ContainerState, writeRunning, writeState } from '../runtime/state';
import { faultPause } from '../lib/fault';
import type { Intent } from '../lib/intent';
import { withUndo } from '../lib/undo';
import { CheckpointCatalog, CheckpointMeta } from './catalog';
import { CLONE_NEWNET } from './dump';
import { namespacedCgroupControllers } from './images';
import { CriuClient } from './criu/client';
import { CriuLogs } from './criu-logs';
import { stageDev, StagedDev } from './dev-tmpfs';
import { prepareIdMap } from './idmap-remap';
import { prepareRestoreStage, removeRestoreStage } from '../runtime/restore-stage';
import { compareVersions, formatVersion, parseVersion, requireCriu } from './criu/version';

export interface RestoreOptions {
  intent?: Intent;
  /**
   * Post-copy: the memory comes from a `criu lazy-pages` daemon already
   * listening in the container's CRIU work directory (CriuLogs' dir), each
   * page when the tree first touches it.
   */
  lazyPages?: boolean;
}

/**
 * Continue a container from checkpoint `meta` of `catalog`: its cgroups are
 * made again, CRIU restores the tree under a new monitor, and the console
 * CRIU re-creates is handed to that monitor, so logs, exec and console work
 * as before. A failed restore leaves the checkpoint intact and the container
 * stopped and restorable. The caller holds the container's lock, has checked
 * it is not running and has opened its pool (ops/restore, a stateful
 * snapshot's rollback).
 */
export async function restoreFrom(c: Container, current: ContainerState, catalog: CheckpointCatalog, meta: CheckpointMeta, opts: RestoreOptions = {}): Promise<ContainerState> {
  const criu = new CriuClient();
  const version = await requireCriu('4.1', criu, c.root.cacheDir);
  if (compareVersions(version, parseVersion(meta.criuVersion)) < 0) {
    throw new NotSupportedError(`checkpoint ${meta.id} was made by CRIU ${meta.criuVersion}, newer than this host's ${formatVersion(version)}`, 'restore it on a host with that CRIU or newer');
  }
  const cfg = c.config;
  // Before anything else: a checkpoint of another range is made this container's, or refused.
  prepareIdMap(catalog.dir(meta.id), meta.id, cfg);

  return withUndo(async (undo) => {
    for (const stale of [c.paths.exitFile, c.paths.consoleSocket]) fs.rmSync(stale, { force: true });
    // Journalled before each step (opts.intent), so a killed restore is undone by the next command.
    await opts.intent?.will({ kind: 'state', state: current });
    // The checkpoint it waits on stays in the record while it starts: a restore that dies says where it was.
    await writeState(c.paths, { status: 'starting', ...(current.checkpoint ? { checkpoint: current.checkpoint } : {}) });
    undo.add('record stopped', () => writeState(c.paths, current));
    await opts.intent?.will({ kind: 'release' });
    undo.add('release host resources', async () => { await releaseHostResources(c); });
    await c.cgroups().create(cfg.limits);
    const network = cfg.net.mode === 'bridge' ? await import('../runtime/network') : undefined;
    if (cfg.net.mode === 'bridge') await network!.ensureBridge(cfg.net);

    const stage = await prepareRestoreStage(c.key, cfg.idmap ?? { uid: 0, gid: 0 });
    undo.add('remove the restore stage', () => removeRestoreStage(c.key));
    // An idmapped rootfs is mounted idmapped on the host for CRIU's --root (it binds it in as the container's /).
    const idmapped = cfg.idmap?.rootfs === 'idmapped' ? { src: c.paths.rootfs, dst: stage.root, map: cfg.idmap } : undefined;
    const monitor = new MonitorRestore(c.paths.dir, criuBinary(), idmapped);
    undo.add('stop monitor', () => monitor.abort());
    let ptyMaster: number | undefined;
    undo.add('close console', () => { if (ptyMaster !== undefined) fs.closeSync(ptyMaster); });
    if (cfg.idmap) letInImages(catalog.dir(meta.id));
    const imagesFd = fs.openSync(catalog.dir(meta.id), 'r');
    const logs = new CriuLogs(c.paths.dir);
    const logsFd = logs.open();
    let dev: StagedDev | undefined;
    let pid: number;
    try {
      await opts.intent?.will({ kind: 'restore-stage' });
      dev = stageDev(catalog.dir(meta.id), stage.dev);
      await faultPause('restore:staged');
      pid = await criu.restore(
        {
          imagesDirFd: imagesFd,
          workDirFd: logsFd,
          logFile: logs.fileName('restore', meta.id),
          root: idmapped ? stage.root : c.paths.rootfs,
          rstSibling: true,
          orphanPtsMaster: true,
          manageCgroups: true,
          manageCgroupsMode: 'SOFT',
          fileLocks: true,
          tcpEstablished: meta.tcpEstablished,
          // Checkpoints of older tsvz left a --net none netns out of the dump (empty_ns): made anew.
          emptyNs: meta.emptyNetns ? CLONE_NEWNET : undefined,
          notifyScripts: true,
          lazyPages: opts.lazyPages === true,
          // Its cgroups were another container's: CRIU moves them to ours (ContainerCgroups' tsvz/<key>).
          cgRoot: meta.importedFrom ? namespacedCgroupControllers(catalog.dir(meta.id)).map((ctrl) => ({ ctrl, path: `/tsvz/${c.key}` })) : undefined,
          external: [
            ...(cfg.net.mode === 'bridge' ? [network!.criuExternalVeth(c.key, cfg.net)] : []),
            ...(dev ? [dev.external] : []),
          ],
        },
        {
          onNotify: (script, ctx) => {
            if (script === 'orphan-pts-master' && ctx.fd !== undefined) ptyMaster = ctx.fd;
            // A network namespace made anew has its loopback down: up before any socket is restored.
            if (script === 'setup-namespaces' && meta.emptyNetns && ctx.pid) loopbackUp(ctx.pid);
          },
        },
        monitor.launcher,
      );
    } finally {
      fs.closeSync(imagesFd);
      fs.closeSync(logsFd);
      // The container's /dev and / hold their mounts now; the host keeps none of them.
      dev?.remove();
      await removeRestoreStage(c.key);
    }
    logs.restored(meta.id, catalog.dir(meta.id));
    if (ptyMaster === undefined) throw new InvalidStateError('CRIU restored the container without handing over its console');
    if (cfg.net.mode === 'bridge') await network!.hostVethUp(c.key);
    await monitor.handOver(pid, ptyMaster);
    fs.closeSync(ptyMaster);
    ptyMaster = undefined;

    const running = await writeRunning(c.paths, pid, monitor.child.pid);
    // It runs: a tsvz killed from here on must not undo that, only tidy up.
    opts.intent?.reach('running');
    return running;
  });
}

/**
 * The restored tree reads its images through the images directory's fd, as
 * the container's root: the directory must let it in and the files be
 * readable (CRIU writes them so; an import may not have). A pre-copy
 * migration's earlier rounds, which the `parent` links lead to, are opened
 * by name: readable too. The container's directory above keeps everyone
 * else out.
 */
function letInImages(dir: string, mode = 0o711): void {
  fs.chmodSync(dir, mode);
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, f.name);
    if (f.isDirectory()) letInImages(p, 0o755);
    if (!f.isFile()) continue;
    const mode = fs.statSync(p).mode & 0o777;
    if ((mode & 0o004) === 0) fs.chmodSync(p, mode | 0o044);
  }
}
