import fs = require('node:fs');
import { BusyError, SystemError } from './errors';
import { sleepSync } from './proc';
import { lazyLibc } from './koffi';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/** flock(2) through koffi. */
const libc = lazyLibc((lib, koffi) => ({
  flock: lib.func('int flock(int fd, int op)') as (fd: number, op: number) => number,
  errno: (): number => koffi.errno(),
}));

/**
 * Per-container exclusive lock. flock is released by the kernel when the
 * holder dies, so a CLI killed mid-operation never leaves a stale lock.
 * A second operation waits up to `waitMs`, then fails with a "busy" error.
 */
export function withLock<T>(lockFile: string, what: string, waitMs: number, body: () => T): T {
  const fd = acquire(lockFile, what, waitMs);
  try {
    return body();
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `shared`: many holders at once, none while an exclusive holder has it (pool
 * operations: volume work shares a pool's lock, creating or removing the pool
 * takes it alone). Never take an exclusive lock on a file this process
 * already holds: flock would wait on ourselves.
 */
export async function withLockAsync<T>(lockFile: string, what: string, waitMs: number, body: () => Promise<T>, opts: { shared?: boolean } = {}): Promise<T> {
  const fd = acquire(lockFile, what, waitMs, opts.shared === true);
  try {
    return await body();
  } finally {
    fs.closeSync(fd);
  }
}

// Node opens files close-on-exec, so a lock is never inherited by a spawned monitor.
function acquire(lockFile: string, what: string, waitMs: number, shared = false): number {
  const fd = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (libc().flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) === 0) return fd;
    const errno = libc().errno();
    if (errno !== EWOULDBLOCK) {
      fs.closeSync(fd);
      throw new SystemError(`cannot lock ${what}: flock errno ${errno}`);
    }
    if (Date.now() >= deadline) {
      fs.closeSync(fd);
      throw new BusyError(`${what} is busy: another tsvz operation is in progress`, 'retry when it has finished');
    }
    sleepSync(20);
  }
}
