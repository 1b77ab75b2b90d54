import fs = require('node:fs');
import { getSystemErrorName } from 'node:util';
import { SystemError } from '../lib/errors';
import { lazyLibc } from '../lib/koffi';

/*
 * Bringing up `lo` in another process's network namespace from this process,
 * not with `nsenter -t PID -n ip link set lo up`: two execs, ~15 ms inside
 * CRIU's restore here. setns acts on the calling thread only: this thread
 * enters the namespace, sets IFF_UP with SIOCSIFFLAGS, and goes back to its own.
 * Constants and struct ifreq's layout are Linux 64-bit.
 */
const CLONE_NEWNET = 0x40000000;
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const IFF_UP = 0x1;
/** struct ifreq: char ifr_name[16], then a 24-byte union whose first member here is short ifr_flags. */
const IFREQ_SIZE = 40;
const IFR_FLAGS = 16;

interface Libc {
  setns(fd: number, nstype: number): number;
  socket(domain: number, type: number, protocol: number): number;
  ioctl(fd: number, request: number, argType: string, arg: Buffer): number;
  close(fd: number): number;
  errno(): number;
}

const libc = lazyLibc((lib, koffi): Libc => ({
  setns: lib.func('int setns(int fd, int nstype)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
  close: lib.func('int close(int fd)'),
  errno: () => koffi.errno() as number,
}));

function failed(call: string, errno: number): SystemError {
  const err = Object.assign(new Error(`${call}: ${getSystemErrorName(-errno)}`), { errno });
  return new SystemError(`cannot bring up lo: ${call} failed (${getSystemErrorName(-errno)})`, err);
}

/** `ip link set lo up` in the network namespace of `pid`. */
export function loopbackUp(pid: number): void {
  const l = libc();
  const own = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    const target = fs.openSync(`/proc/${pid}/ns/net`, 'r');
    try {
      if (l.setns(target, CLONE_NEWNET) !== 0) throw failed('setns', l.errno());
    } finally {
      fs.closeSync(target);
    }
    try {
      setUp(l, 'lo');
    } finally {
      // Our own namespace, by an fd we hold, as root: if even that fails, every
      // process this one starts would land in the container's network.
      if (l.setns(own, CLONE_NEWNET) !== 0) {
        fs.writeSync(2, `tsvz: cannot return to the host network namespace (errno ${l.errno()})\n`);
        process.abort();
      }
    }
  } finally {
    fs.closeSync(own);
  }
}

function setUp(l: Libc, name: string): void {
  const sock = l.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) throw failed('socket', l.errno());
  try {
    const ifr = Buffer.alloc(IFREQ_SIZE);
    ifr.write(name, 0, 15, 'latin1');
    if (l.ioctl(sock, SIOCGIFFLAGS, 'void *', ifr) !== 0) throw failed('SIOCGIFFLAGS', l.errno());
    ifr.writeInt16LE(ifr.readInt16LE(IFR_FLAGS) | IFF_UP, IFR_FLAGS);
    if (l.ioctl(sock, SIOCSIFFLAGS, 'void *', ifr) !== 0) throw failed('SIOCSIFFLAGS', l.errno());
  } finally {
    l.close(sock);
  }
}
