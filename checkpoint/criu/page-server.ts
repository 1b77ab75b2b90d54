import path = require('node:path');
import { spawnWithFds, Spawned } from '../../lib/spawn-fds';
import type { CriuClient, SwrkLauncher, SwrkProcess } from './client';
import { CriuError } from './errors';
import { criuEnv } from './binary';

/*
 * A dump whose memory goes to another host's images, never to a file here:
 * the dump is given a connected stream socket as its page server's (ps.fd,
 * which CRIU takes over RPC from a swrk), and on the other end `criu
 * page-server` writes the pagemaps and pages into its images directory.
 * What lies between the two sockets (the daemons' authenticated data
 * channel) is the caller's; no port of CRIU's is ever open.
 */

/** The fd the dump's swrk has the page server's socket at: its RPC socket is 3. */
export const DUMP_PS_FD = 4;
const SERVER_PS_FD = 3;

/** `criu swrk` with its RPC socket at 3 and `socket` at DUMP_PS_FD, for a dump with `ps: { fd: DUMP_PS_FD }`. */
export function pageServerDumpLauncher(client: CriuClient, socket: number): SwrkLauncher {
  return (criuEnd, inherited): SwrkProcess => {
    if (inherited.length > 0) throw new CriuError('dump', { detail: 'a dump to a page server passes no inheritFd' });
    try {
      return spawnWithFds(client.criuPath, ['swrk', '3'], [criuEnd, socket], criuEnv());
    } catch (error) {
      return { exited: Promise.resolve({ error: error as Error }), stderrTail: () => '' };
    }
  };
}

/**
 * `criu page-server` on `socket` (a connected stream socket), writing what a
 * dump sends into `imagesDir`. It exits 0 once the dump closed the
 * session, having written everything. `parent` (relative to imagesDir):
 * the previous pre-copy round's images, which it links as `parent` and
 * tells the dump of, so the dump sends only the pages changed since.
 */
export function startPageServer(o: { criuPath: string; imagesDir: string; workDir: string; socket: number; logFile: string; parent?: string }): { server: Spawned; done: Promise<void> } {
  const server = spawnWithFds(
    o.criuPath,
    ['page-server', '--ps-socket', String(SERVER_PS_FD), '-D', o.imagesDir, '-W', o.workDir, '-o', o.logFile, '-v4', ...(o.parent ? ['--prev-images-dir', o.parent] : [])],
    [o.socket],
    criuEnv(),
  );
  const logPath = path.isAbsolute(o.logFile) ? o.logFile : path.join(o.workDir, o.logFile);
  const done = server.exited.then((exit) => {
    if (exit.code === 0 && !exit.signal) return;
    throw new CriuError('page-server', { logPath, detail: exit.signal ? `criu page-server was killed by ${exit.signal}` : undefined });
  });
  done.catch(() => undefined); // the caller races it with the stream
  return { server, done };
}
