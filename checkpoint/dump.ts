import fs = require('node:fs');
import os = require('node:os');
import type { Container } from '../runtime/container';
import { AlreadyExistsError, SystemError } from '../lib/errors';
import { faultPause } from '../lib/fault';
import { reconcile } from '../runtime/release';
import { pollUntil } from '../lib/poll';
import { isSameProcess, processStartTime } from '../lib/proc';
import type { ContainerState } from '../runtime/state';
import type { Intent } from '../lib/intent';
import { withUndo } from '../lib/undo';
import { CheckpointCatalog, CheckpointMeta, directorySize, newCheckpointId } from './catalog';
import { cgroupYard } from './cgroup-yard';
import { CriuClient } from './criu/client';
import { lazyDumpSetup } from './criu/lazy-pages';
import { DUMP_PS_FD, pageServerDumpLauncher } from './criu/page-server';
import { CriuError } from './criu/errors';
import { CriuLogs } from './criu-logs';
import { DEV_EXTERNAL_DUMP, devMountOf, saveDev } from './dev-tmpfs';
import { formatVersion, requireCriu } from './criu/version';
import { criuFreezer, isFrozen, moveFreezeTo, thawAll } from '../runtime/cgroups/freezer';
import { findUndumpable } from './undumpable';
import { readDumpStats } from './images';
import { trace } from '../lib/trace';

export const CLONE_NEWNET = 0x40000000;

export interface CheckpointOptions {
  name?: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  /**
   * The operation's journal (lib/intent.ts): the image directory is recorded
   * before it is made, and CRIU's post-dump notification (every image
   * written) is the point past which a killed operation is finished.
   */
  intent?: Intent;
  /**
   * Runs at CRIU's post-dump, the tree frozen and every image written in
   * `dir`, before CRIU kills (or resumes) it: a migration ships the images
   * here. A throw makes CRIU resume the tree and fails the dump.
   */
  onDumped?: (dir: string) => Promise<void>;
  /** CRIU's pre-dump notification: it freezes the tree next (a migration's freeze is timed from here). */
  onFreezing?: () => void;
  /**
   * Post-copy: the memory stays in CRIU's page server, which serves it
   * through `socket` (a connected stream socket) once `onServing` is called,
   * after onDumped; CRIU kills the tree when the last page was pulled and
   * resumes it when the transfer fails. The network is left unlocked
   * (the caller cuts the container off itself): CRIU would leave a resumed
   * tree's lock in place. dumpContainer closes the socket: once CRIU holds
   * it, or when the dump fails before.
   */
  lazy?: { socket: number; configDir: string; onServing: () => void };
  /**
   * The memory goes to a page server elsewhere through `socket` (a
   * connected stream socket), not into `dir`: by CRIU's post-dump every
   * page is there. dumpContainer closes the socket, as lazy's.
   */
  pageServer?: { socket: number };
  /**
   * Pre-copy's last round: the previous round's images (relative to the
   * checkpoint's directory), whose memory the page server holds already;
   * only the pages written since go.
   */
  parent?: string;
}

/**
 * Dump a running container with CRIU (vzctl chkpnt): frozen through its
 * freezer cgroup, its whole tree written to `catalog`'s <id>/. Without
 * leaveRunning the container is stopped and a restore continues it. A failed
 * dump leaves the container running (CRIU resumes it; we thaw) and removes
 * the partial images. The caller holds the container's lock and has checked
 * it runs (ops/checkpoint, a stateful snapshot). If the container is frozen
 * already, CRIU leaves it frozen.
 */
export async function dumpContainer(c: Container, state: ContainerState, catalog: CheckpointCatalog, opts: CheckpointOptions = {}): Promise<CheckpointMeta> {
  // The page server's socket is closed here on every path, at the latest when the dump ends.
  let socket = opts.lazy?.socket ?? opts.pageServer?.socket;
  const releaseSocket = () => {
    if (socket !== undefined) fs.closeSync(socket);
    socket = undefined;
  };
  try {
    return await dump(c, state, catalog, opts, releaseSocket);
  } finally {
    releaseSocket();
  }
}

async function dump(c: Container, state: ContainerState, catalog: CheckpointCatalog, opts: CheckpointOptions, releaseSocket: () => void): Promise<CheckpointMeta> {
  trace('checkpoint: locked');
  const id = opts.name ?? newCheckpointId();
  const dir = catalog.dir(id);
  if (fs.existsSync(dir)) throw new AlreadyExistsError(`container ${c.name} already has a checkpoint "${id}"`);
  const criu = new CriuClient();
  const version = await requireCriu('4.1', criu, c.root.cacheDir);
  const cg = c.cgroups();
  const freezer = criuFreezer(cg);
  const wasFrozen = isFrozen(cg);
  const loopbackOnly = c.config.net.mode === 'none';
  const logs = new CriuLogs(c.paths.dir);
  const dev = state.initPid === undefined ? undefined : devMountOf(state.initPid);
  // Frozen by `tsvz freeze` (or a stateful snapshot): by CRIU's freezer only, or CRIU would wait forever.
  if (wasFrozen) await moveFreezeTo(freezer);

  // Undo covers the dump only: once CRIU succeeded (and, without
  // leaveRunning, killed the tree) the images are the container; nothing
  // after this point may remove them.
  const { dumpMs, record } = await withUndo(async (undo) => {
    fs.mkdirSync(catalog.root, { recursive: true, mode: 0o700 });
    await opts.intent?.will({ kind: 'remove', path: dir });
    fs.mkdirSync(dir, { mode: 0o700 });
    undo.add('remove partial images', () => fs.rmSync(dir, { recursive: true, force: true }));
    // The record's file is made durable now: after the images, its fsync would wait on theirs.
    const slot = await catalog.prepareSave(id);
    undo.add('discard the record', () => slot.discard());
    if (!wasFrozen) undo.add('thaw', () => thawAll(cg));
    const imagesFd = fs.openSync(dir, 'r');
    const logsFd = logs.open();
    const started = process.hrtime.bigint();
    const lazy = opts.lazy && lazyDumpSetup(criu, opts.lazy.socket, opts.lazy.configDir);
    const launcher = lazy ? lazy.launcher : opts.pageServer && pageServerDumpLauncher(criu, opts.pageServer.socket);
    try {
      await criu.dump({
        imagesDirFd: imagesFd,
        workDirFd: logsFd,
        logFile: logs.fileName('dump', id),
        pid: state.initPid,
        leaveRunning: opts.leaveRunning === true,
        freezeCgroup: freezer.path,
        // The console's master is held by the monitor: a new one is made on restore.
        orphanPtsMaster: true,
        manageCgroups: true,
        manageCgroupsMode: 'SOFT',
        cgroupYard: cgroupYard(c.root.cacheDir),
        fileLocks: true,
        tcpEstablished: opts.tcpEstablished === true,
        // A --net none container has only loopback: no peer to lock out. Its
        // namespace is still dumped: the workload may have set sysctls,
        // addresses, routes or rules in it, and nothing cheap proves it did not.
        networkLock: loopbackOnly || lazy ? 'SKIP' : undefined,
        ...(lazy ? { lazyPages: true, configFile: lazy.configFile } : {}),
        ...(opts.pageServer ? { ps: { fd: DUMP_PS_FD } } : {}),
        ...(opts.parent ? { trackMem: true, parentImg: opts.parent } : {}),
        // /dev is saved by tsvz (dev-tmpfs.ts), not by CRIU's tar.
        external: dev ? [DEV_EXTERNAL_DUMP] : undefined,
        // post-dump: the images are written; CRIU is about to kill (or resume) the tree.
        notifyScripts: true,
      }, {
        // A tsvz killed mid-dump leaves CRIU to end by itself (it resumes the tree when its client goes): recovery waits for it.
        onSpawned: (pid) => opts.intent?.willNow({ kind: 'wait-exit', pid, startTime: processStartTime(pid), thawIfKilled: !wasFrozen }),
        onNotify: async (script) => {
          if (script === 'pre-dump') opts.onFreezing?.();
          if (script === 'network-lock') return faultPause('checkpoint:frozen');
          if (script === 'post-dump') {
            // The tree is still frozen: its /dev is what the images expect.
            if (dev) saveDev(dev, dir);
            if (opts.onDumped) await opts.onDumped(dir);
            // Every image is written: a tsvz killed from here on leaves a checkpoint to finish, not to undo.
            opts.intent?.reach('dumped', { meta: { criuVersion: formatVersion(version), kernel: os.release(), leaveRunning: opts.leaveRunning === true, tcpEstablished: opts.tcpEstablished === true } });
            // The device's flush of the images, which the record's write would wait for, runs while CRIU kills a big tree.
            slot.startFlush();
            return faultPause('checkpoint:dumped');
          }
          if (script === 'status-ready') opts.lazy?.onServing();
          return undefined;
        },
      }, launcher && ((criuEnd, inherited) => {
        const swrk = launcher(criuEnd, inherited);
        releaseSocket(); // swrk holds it now: its end is the page server's alone
        return swrk;
      }));
    } catch (err) {
      // CRIU failed after its post-dump notification (killing the tree): it resumed the tree, so there is nothing to finish.
      opts.intent?.reach(undefined);
      throw explainDumpFailure(err, cg.pids());
    } finally {
      fs.closeSync(imagesFd);
      fs.closeSync(logsFd);
      if (lazy) fs.rmSync(lazy.configFile, { force: true });
    }
    return { dumpMs: Number(process.hrtime.bigint() - started) / 1e6, record: slot };
  });

  trace('checkpoint: dumped');
  const meta: CheckpointMeta = {
    id,
    container: c.name,
    createdAt: new Date().toISOString(),
    criuVersion: formatVersion(version),
    kernel: os.release(),
    leaveRunning: opts.leaveRunning === true,
    tcpEstablished: opts.tcpEstablished === true,
    dumpMs,
    sizeBytes: 0,
  };
  try {
    logs.keepWithImages(id, dir);
    Object.assign(meta, { sizeBytes: directorySize(dir), ...dumpStats(dir) });
    await catalog.saveInto(record, meta);
  } catch (err) {
    await record.discard();
    if (!meta.leaveRunning) await reconcile(c, { checkpoint: id });
    throw new SystemError(`checkpoint ${id} of ${c.name} was taken (images in ${dir}) but its record could not be written`, err);
  }

  trace('checkpoint: recorded');
  if (!meta.leaveRunning) {
    // CRIU killed the tree; the monitor records that and exits.
    await pollUntil(() => !isSameProcess(state.monitorPid, state.monitorStartTime), { timeoutMs: 2000, maxMs: 1 });
    await reconcile(c, { checkpoint: id });
  }
  return meta;
}

/** CRIU's statistics for `checkpoint list`; a dump is not failed over unreadable statistics. */
function dumpStats(dir: string): Partial<CheckpointMeta> {
  try {
    const s = readDumpStats(dir);
    if (!s) return {};
    return { frozenMs: s.frozenUs / 1000, memdumpMs: s.memdumpUs / 1000, memwriteMs: s.memwriteUs / 1000, pagesWritten: s.pagesWritten };
  } catch {
    return {};
  }
}

/** CRIU's reason for objects it can't dump is cryptic: name them when we see them. */
function explainDumpFailure(err: unknown, pids: number[]): unknown {
  if (!(err instanceof CriuError)) return err;
  const undumpable = findUndumpable(pids);
  if (undumpable.length === 0) return err;
  return new CriuError('dump', {
    logPath: err.logPath,
    detail: `${undumpable.join('; ')}, which CRIU cannot checkpoint`,
    hint: undumpable.some((u) => u.includes('from outside the container'))
      ? 'start such a job with its output redirected inside the container (`>/dev/null 2>&1 </dev/null`), or stop it before checkpointing'
      : 'stop that program (or make it close that fd) before checkpointing',
    cause: err,
  });
}
