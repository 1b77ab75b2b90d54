import fs = require('node:fs');
import path = require('node:path');
import { BusyError, SystemError } from './errors';
import { lazyLibc } from './koffi';
import { sleep } from './poll';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;
const EINTR = 4;

/** flock(2) through koffi. */
const libc = lazyLibc((lib, koffi) => ({
  flock: lib.func('int flock(int fd, int op)') as (fd: number, op: number) => number,
  errno: (): number => koffi.errno(),
}));

export interface LockOptions {
  /** Many holders at once, none while an exclusive holder has it. */
  shared?: boolean;
}

/**
 * Run `body` holding the lock file `lockFile`: exclusive by default, shared
 * with `opts.shared` (pool operations: work on volumes shares a pool's lock,
 * creating or removing the pool takes it alone). Between processes it is a
 * flock, which the kernel drops when its holder dies, so a CLI killed
 * mid-operation never leaves a stale lock. Within one process (a daemon
 * serving many calls) callers queue in front of the flock in arrival order,
 * so two calls on one container wait for each other instead of for their
 * own flock. A caller that waits more than `waitMs` in all gets BusyError.
 */
export async function withLock<T>(lockFile: string, what: string, waitMs: number, body: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const lock = lockFor(lockFile);
  const release = await lock.acquire(opts.shared === true, performance.now() + waitMs, what);
  try {
    return await body();
  } finally {
    release();
  }
}

interface Waiter {
  shared: boolean;
  grant: () => void;
}

/** One lock file's holders in this process, and the flock they share. */
class ProcessLock {
  private shared = 0;
  private exclusive = false;
  private queue: Waiter[] = [];
  /** The flock of the current holders: taken by the first, shared by later shared ones. */
  private held: Promise<number> | undefined;

  constructor(readonly file: string) {}

  async acquire(shared: boolean, deadline: number, what: string): Promise<() => void> {
    await this.enter(shared, deadline, what);
    try {
      this.held ??= flockUntil(this.file, shared, deadline, what);
      await this.held;
    } catch (err) {
      this.held = undefined;
      this.leave(shared);
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.leave(shared);
    };
  }

  /** Wait for this process's other holders: in order, shared ones together. */
  private enter(shared: boolean, deadline: number, what: string): Promise<void> {
    if (this.queue.length === 0 && this.admits(shared)) {
      this.take(shared);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        shared,
        grant: () => {
          clearTimeout(timer);
          this.take(shared);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.queue = this.queue.filter((w) => w !== waiter);
        reject(busy(what));
        this.wake();
      }, Math.max(0, deadline - performance.now()));
      this.queue.push(waiter);
    });
  }

  private admits(shared: boolean): boolean {
    return !this.exclusive && (shared || this.shared === 0);
  }

  private take(shared: boolean): void {
    if (shared) this.shared++;
    else this.exclusive = true;
  }

  private leave(shared: boolean): void {
    if (shared) this.shared--;
    else this.exclusive = false;
    if (this.shared === 0 && !this.exclusive && this.held) {
      // The last holder: the flock goes (closing the fd drops it).
      const held = this.held;
      this.held = undefined;
      void held.then((fd) => fs.closeSync(fd), () => undefined);
    }
    this.wake();
  }

  private wake(): void {
    while (this.queue.length > 0 && this.admits(this.queue[0].shared)) {
      const next = this.queue.shift()!;
      next.grant();
      if (!next.shared) break;
    }
  }
}

const locks = new Map<string, ProcessLock>();

function lockFor(file: string): ProcessLock {
  const key = path.resolve(file);
  let lock = locks.get(key);
  if (!lock) {
    lock = new ProcessLock(key);
    locks.set(key, lock);
  }
  return lock;
}

/**
 * Open the lock file and take its flock, trying without blocking and waiting
 * on a timer in between (a blocking flock would stall the event loop).
 * Node opens files close-on-exec, so a spawned monitor never inherits a lock.
 */
async function flockUntil(file: string, shared: boolean, deadline: number, what: string): Promise<number> {
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    if (libc().flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) === 0) return fd;
    const errno = libc().errno();
    if (errno === EINTR) continue;
    if (errno !== EWOULDBLOCK) {
      fs.closeSync(fd);
      throw new SystemError(`cannot lock ${what}: flock errno ${errno}`);
    }
    if (performance.now() >= deadline) {
      fs.closeSync(fd);
      throw busy(what);
    }
    await sleep(Math.min(delay, Math.max(1, deadline - performance.now())));
  }
}

function busy(what: string): BusyError {
  return new BusyError(`${what} is busy: another tsvz operation is in progress`, 'retry when it has finished');
}
