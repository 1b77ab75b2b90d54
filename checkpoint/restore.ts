import fs = require('node:fs');
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
import { compareVersions, formatVersion, parseVersion, requireCriu } from './criu/version';

/**
 * Continue a container from checkpoint `meta` of `catalog`: its cgroups are
 * made again, CRIU restores the tree under a new monitor, and the console
 * CRIU re-creates is handed to that monitor, so logs, exec and console work
 * as before. A failed restore leaves the checkpoint intact and the container
 * stopped and restorable. The caller holds the container's lock, has checked
 * it is not running and has opened its pool (ops/restore, a stateful
 * snapshot's rollback).
 */
export async function restoreFrom(c: Container, current: ContainerState, catalog: CheckpointCatalog, meta: CheckpointMeta, opts: { intent?: Intent } = {}): Promise<ContainerState> {
  const criu = new CriuClient();
  const version = await requireCriu('4.1', criu, c.root.cacheDir);
  if (compareVersions(version, parseVersion(meta.criuVersion)) < 0) {
    throw new NotSupportedError(`checkpoint ${meta.id} was made by CRIU ${meta.criuVersion}, newer than this host's ${formatVersion(version)}`, 'restore it on a host with that CRIU or newer');
  }
  const cfg = c.config;

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

    const monitor = new MonitorRestore(c.paths.dir, criuBinary());
    undo.add('stop monitor', () => monitor.abort());
    let ptyMaster: number | undefined;
    undo.add('close console', () => { if (ptyMaster !== undefined) fs.closeSync(ptyMaster); });
    const imagesFd = fs.openSync(catalog.dir(meta.id), 'r');
    const logs = new CriuLogs(c.paths.dir);
    const logsFd = logs.open();
    let dev: StagedDev | undefined;
    let pid: number;
    try {
      await opts.intent?.will({ kind: 'remove', path: c.paths.restoreDev });
      await opts.intent?.will({ kind: 'unmount', path: c.paths.restoreDev });
      dev = stageDev(catalog.dir(meta.id), c.paths.restoreDev);
      await faultPause('restore:staged');
      pid = await criu.restore(
        {
          imagesDirFd: imagesFd,
          workDirFd: logsFd,
          logFile: logs.fileName('restore', meta.id),
          root: c.paths.rootfs,
          rstSibling: true,
          orphanPtsMaster: true,
          manageCgroups: true,
          manageCgroupsMode: 'SOFT',
          fileLocks: true,
          tcpEstablished: meta.tcpEstablished,
          // Checkpoints of older tsvz left a --net none netns out of the dump (empty_ns): made anew.
          emptyNs: meta.emptyNetns ? CLONE_NEWNET : undefined,
          notifyScripts: true,
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
      // The container's /dev holds the tmpfs now; the host keeps no mount of it.
      dev?.remove();
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
