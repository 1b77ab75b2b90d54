import { spawn } from 'node:child_process';
import fs = require('node:fs');
import net = require('node:net');
import { once } from 'node:events';

/**
 * Post-copy's byte channel: on each host a socket of CRIU's (the source's
 * page server, the target's lazy-pages daemon) is joined to the Pages call
 * over the daemons' mutual TLS, so no port of CRIU's is ever open and every
 * page travels authenticated.
 */
export interface PageLink {
  /** The other host's bytes, in order; ends when it ended its side. */
  incoming: AsyncIterable<Buffer>;
  /** Resolves once the call takes `data` (backpressure). */
  send(data: Buffer): Promise<void>;
  /** No more bytes from this side. */
  end(): void;
  /** Break the call (a failure). */
  close(): void;
}

/**
 * Joins `fd` (a connected stream socket, owned from now on) to `link` both
 * ways. Resolves once both directions ended; rejects on the first failure
 * of either, the socket then closed.
 */
export function pump(fd: number, link: PageLink): Promise<void> {
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
      sock.destroy();
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
