import { getSystemErrorName } from 'node:util';
import { SystemError } from './errors';
import { lazyLibc } from './koffi';

/*
 * Readiness of raw fds Node's own loop cannot watch (CRIU's SOCK_SEQPACKET
 * socket, pidfds). One epoll set, waited on by one blocking epoll_wait on a
 * koffi worker thread, serves every watched fd. A blocking poll per fd
 * would hold one of koffi's few worker threads each, and a handful of
 * operations at once (a daemon checkpointing several containers) would
 * take them all and wait for ever. Registrations are one-shot: an fd fires
 * once per watch(), so nothing spins between an event and its read.
 */
const EPOLL_CLOEXEC = 0o2000000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLLIN = 0x1;
const EPOLLERR = 0x8;
const EPOLLHUP = 0x10;
const EPOLLONESHOT = 1 << 30;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const ENOENT = 2;
const EEXIST = 17;
const MAX_EVENTS = 64;
/** struct epoll_event is packed on x86_64 (u32 events, u64 data: 12 bytes), natural elsewhere (16). */
const EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const DATA_OFFSET = process.arch === 'x64' ? 4 : 8;

interface Libc {
  epollCreate1(flags: number): number;
  epollCtl(epfd: number, op: number, fd: number, event: Buffer | null): number;
  epollWait: { async(epfd: number, events: Buffer, max: number, timeout: number, cb: (err: unknown, n: number) => void): void };
  eventfd(initval: number, flags: number): number;
  write(fd: number, buf: Buffer, len: number): number;
  read(fd: number, buf: Buffer, len: number): number;
  errno(): number;
}

const libc = lazyLibc((lib, koffi): Libc => ({
  epollCreate1: lib.func('int epoll_create1(int flags)'),
  epollCtl: lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)'),
  epollWait: lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  write: lib.func('intptr_t write(int fd, const void *buf, size_t len)'),
  read: lib.func('intptr_t read(int fd, void *buf, size_t len)'),
  errno: () => koffi.errno() as number,
}));

function failed(call: string, errno: number): SystemError {
  return new SystemError(`${call} failed: ${getSystemErrorName(-errno)}`, Object.assign(new Error(call), { errno }));
}

class FdWatcher {
  private readonly epfd: number;
  /** Written to end a wait that nobody needs any more (so the process can exit). */
  private readonly wakefd: number;
  private readonly events = Buffer.alloc(MAX_EVENTS * EVENT_SIZE);
  private readonly waiting = new Map<number, () => void>();
  private waitingThread = false;

  constructor(private readonly c: Libc) {
    this.epfd = c.epollCreate1(EPOLL_CLOEXEC);
    if (this.epfd < 0) throw failed('epoll_create1', c.errno());
    this.wakefd = c.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.wakefd < 0) throw failed('eventfd', c.errno());
    this.control(EPOLL_CTL_ADD, this.wakefd, EPOLLIN);
  }

  watch(fd: number): Promise<void> {
    if (this.waiting.has(fd)) return Promise.reject(new SystemError(`fd ${fd} is already being waited on`));
    return new Promise<void>((resolve, reject) => {
      try {
        this.arm(fd);
      } catch (err) {
        reject(err);
        return;
      }
      this.waiting.set(fd, resolve);
      this.wait();
    });
  }

  /** Stop waiting on `fd` (before closing it while a watch is pending). */
  unwatch(fd: number): void {
    if (!this.waiting.delete(fd)) return;
    this.c.epollCtl(this.epfd, EPOLL_CTL_DEL, fd, null);
    if (this.waiting.size === 0 && this.waitingThread) this.wake();
  }

  private arm(fd: number): void {
    const flags = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLONESHOT;
    // Re-arm an fd watched before; add one seen for the first time (or closed and reused).
    if (this.c.epollCtl(this.epfd, EPOLL_CTL_MOD, fd, eventFor(fd, flags)) === 0) return;
    const errno = this.c.errno();
    if (errno !== ENOENT) throw failed('epoll_ctl(MOD)', errno);
    this.control(EPOLL_CTL_ADD, fd, flags);
  }

  private control(op: number, fd: number, flags: number): void {
    if (this.c.epollCtl(this.epfd, op, fd, eventFor(fd, flags)) === 0) return;
    const errno = this.c.errno();
    if (op === EPOLL_CTL_ADD && errno === EEXIST) return;
    throw failed('epoll_ctl', errno);
  }

  private wait(): void {
    if (this.waitingThread || this.waiting.size === 0) return;
    this.waitingThread = true;
    this.c.epollWait.async(this.epfd, this.events, MAX_EVENTS, -1, (err, n) => {
      this.waitingThread = false;
      if (err) {
        const fail = err instanceof Error ? err : new Error(String(err));
        // Every waiter's next read or waitpid tells what happened to its fd.
        for (const resolve of this.waiting.values()) resolve();
        this.waiting.clear();
        process.emitWarning(`tsvz: epoll_wait failed: ${fail.message}`);
        return;
      }
      for (let i = 0; i < Math.max(0, n); i++) {
        const fd = Number(this.events.readBigUInt64LE(i * EVENT_SIZE + DATA_OFFSET));
        if (fd === this.wakefd) {
          this.c.read(this.wakefd, Buffer.alloc(8), 8);
          continue;
        }
        const resolve = this.waiting.get(fd);
        this.waiting.delete(fd);
        resolve?.();
      }
      // n < 0: interrupted (EINTR); wait again for those still waiting.
      this.wait();
    });
  }

  private wake(): void {
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    this.c.write(this.wakefd, one, 8);
  }
}

function eventFor(fd: number, flags: number): Buffer {
  const ev = Buffer.alloc(EVENT_SIZE);
  ev.writeUInt32LE(flags >>> 0, 0);
  ev.writeBigUInt64LE(BigInt(fd), DATA_OFFSET);
  return ev;
}

let watcher: FdWatcher | undefined;

/** Resolves once `fd` is readable, hung up or in error: the caller's next read tells which. */
export function waitReadable(fd: number): Promise<void> {
  watcher ??= new FdWatcher(libc());
  return watcher.watch(fd);
}

/** Give up a pending waitReadable(fd) (it never resolves then). */
export function stopWaiting(fd: number): void {
  watcher?.unwatch(fd);
}
