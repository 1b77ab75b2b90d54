import { spawn } from 'node:child_process';
import fs = require('node:fs');
import net = require('node:net');
import { once } from 'node:events';

/**
 * The memory's byte channel: on each host a socket of CRIU's (post-copy:
 * the source's page server and the target's lazy-pages daemon;
 * stop-and-copy: the source's dump and the target's page server) is joined to a data
 * connection between the daemons (mutual TLS, named by the Pages call), so
 * no port of CRIU's is ever open and every page travels authenticated.
 */
export interface PageLink {
  /** The other host's bytes, in order; ends when it ended its side. */
  incoming: AsyncIterable<Buffer>;
  /** Resolves once the connection takes `data` (backpressure). */
  send(data: Buffer): Promise<void>;
  /** No more bytes from this side. */
  end(): void;
  /** Break the call (a failure). */
  close(): void;
}

/**
 * What the source's pump writes to CRIU's page server when the link fails,
 * before it closes the socket. The page server takes a clean end of its
 * socket for the end of the transfer, and CRIU then kills the dumped tree
 * whose copy on the target is gone: a broken link must not look like that.
 * Whatever part of a request was in flight, 25 bytes of 0xff complete it
 * and leave either a command no server knows or a short request, so the
 * page server fails and CRIU resumes the tree.
 */
export const PAGE_SERVER_POISON = Buffer.alloc(25, 0xff);

/**
 * Joins `fd` (a connected stream socket, owned from now on) to `link` both
 * ways. Resolves once both directions ended; rejects on the first failure
 * of either, the socket then closed, after `onFailure` was written to it.
 */
export function pump(fd: number, link: PageLink, opts: { onFailure?: Buffer } = {}): Promise<void> {
  const sock = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  return new Promise<void>((resolve, reject) => {
    let inDone = false;
    let outDone = false;
    let over = false;
    const done = () => {
      if (!inDone || !outDone || over) return;
      over = true;
      sock.destroy();
      resolve();
    };
    const fail = (err: unknown) => {
      if (over) return;
      over = true;
      if (opts.onFailure && !sock.destroyed) {
        // Past anything still queued: the socket closes once these bytes are out (or it broke).
        sock.end(opts.onFailure);
        sock.once('error', () => undefined);
        setTimeout(() => sock.destroy(), 1000).unref();
      } else {
        sock.destroy();
      }
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    sock.on('data', (data: Buffer) => {
      sock.pause();
      link.send(data).then(() => sock.resume(), fail);
    });
    sock.on('end', () => {
      outDone = true;
      link.end();
      done();
    });
    sock.on('error', fail);
    void (async () => {
      for await (const data of link.incoming) {
        if (over) return;
        if (!sock.write(data)) await once(sock, 'drain');
      }
      sock.end();
      inDone = true;
      done();
    })().catch(fail);
  });
}

/** A process that kills the restored tree unless released: it holds the one end of a pipe whose other end dies with this process. */
export interface LazyGuard {
  release(): void;
}

/**
 * Until released, `pid` (the restored copy's init, whose pid namespace dies
 * with it) is killed when this process goes: its missing pages would
 * otherwise read as zeros once the lazy-pages daemon is gone.
 */
export function startGuard(pid: number): LazyGuard {
  const child = spawn('sh', ['-c', 'read _ || kill -9 "$1"', 'tsvz-lazy-guard', String(pid)], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  child.on('error', () => undefined);
  child.stdin.on('error', () => undefined);
  child.unref();
  return { release: () => child.stdin.end('done\n') };
}

export function killTree(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // closed already
  }
}
