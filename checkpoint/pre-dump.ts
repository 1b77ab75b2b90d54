import fs = require('node:fs');
import type { Container } from '../runtime/container';
import type { ContainerState } from '../runtime/state';
import { CriuClient } from './criu/client';
import { DUMP_PS_FD, pageServerDumpLauncher } from './criu/page-server';
import { CriuLogs } from './criu-logs';
import { DEV_EXTERNAL_DUMP, devMountOf } from './dev-tmpfs';
import { cgroupYard } from './cgroup-yard';
import { criuFreezer, isFrozen, thawAll } from '../runtime/cgroups/freezer';
import { DumpStats, readDumpStats } from './images';

export interface PreDumpOptions {
  /** The round's images directory here (made by the caller): CRIU's records of the round, not its memory. */
  dir: string;
  /** The previous round's directory, relative to `dir`: only the pages written since go. */
  parent?: string;
  /** A connected stream socket to the page server that takes the memory (closed here). */
  socket: number;
  /** The log's name in the container's CRIU log directory. */
  logName: string;
}

/**
 * One round of pre-copy: CRIU freezes the tree for as long as it takes to
 * note which pages are dirty, thaws it, and sends those pages through the
 * page server's socket while it runs on; the kernel's soft-dirty bits are
 * cleared, so the next round (or the final dump) sends only what changed
 * since. The caller holds the container's lock and has checked it runs,
 * unfrozen (a failed round leaves it thawed).
 */
/** CRIU's statistics of the round (undefined if it wrote none). */
export async function preDumpContainer(c: Container, state: ContainerState, o: PreDumpOptions): Promise<DumpStats | undefined> {
  let socket: number | undefined = o.socket;
  const releaseSocket = () => {
    if (socket !== undefined) fs.closeSync(socket);
    socket = undefined;
  };
  const criu = new CriuClient();
  const logs = new CriuLogs(c.paths.dir);
  const dev = state.initPid === undefined ? undefined : devMountOf(state.initPid);
  const launcher = pageServerDumpLauncher(criu, o.socket);
  try {
    const imagesFd = fs.openSync(o.dir, 'r');
    const logsFd = logs.open();
    try {
      await criu.preDump({
        imagesDirFd: imagesFd,
        workDirFd: logsFd,
        logFile: o.logName,
        pid: state.initPid,
        freezeCgroup: criuFreezer(c.cgroups()).path,
        cgroupYard: cgroupYard(c.root.cacheDir),
        trackMem: true,
        ...(o.parent ? { parentImg: o.parent } : {}),
        ps: { fd: DUMP_PS_FD },
        external: dev ? [DEV_EXTERNAL_DUMP] : undefined,
      }, (criuEnd, inherited) => {
        const swrk = launcher(criuEnd, inherited);
        releaseSocket(); // swrk holds it now: its end is the page server's alone
        return swrk;
      });
    } catch (err) {
      // CRIU thaws the tree when it fails; a CRIU that was killed while it held the tree frozen does not.
      if (isFrozen(c.cgroups())) await thawAll(c.cgroups());
      throw err;
    } finally {
      fs.closeSync(imagesFd);
      fs.closeSync(logsFd);
    }
  } finally {
    releaseSocket();
  }
  // CRIU writes its statistics into its work directory.
  logs.keepStatsWith(o.dir);
  return readDumpStats(o.dir);
}
