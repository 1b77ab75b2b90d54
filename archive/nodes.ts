import { SystemError } from '../lib/errors';
import { lazyLibc } from '../lib/koffi';

/**
 * Device nodes and fifos, made by libc's mknod (node:fs has neither; a
 * system call, not a child process per node). Made 0600: the caller sets
 * the owner and then the real mode.
 */

const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

interface Libc {
  mknod(path: string, mode: number, dev: bigint): number;
  errno(): number;
}

// mknod is an exported symbol from glibc 2.33 on (before, only __xmknod).
const libc = lazyLibc((lib, koffi): Libc => ({
  mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
  errno: () => koffi.errno() as number,
}));

export type NodeType = 'character-device' | 'block-device' | 'fifo';

export function makeNode(path: string, type: NodeType, major: number, minor: number): void {
  const kind = type === 'fifo' ? S_IFIFO : type === 'character-device' ? S_IFCHR : S_IFBLK;
  const dev = type === 'fifo' ? 0n : makedev(major, minor);
  const l = libc();
  if (l.mknod(path, kind | 0o600, dev) !== 0) {
    const errno = l.errno();
    throw new SystemError(`cannot create ${type} ${path} (errno ${errno})`, Object.assign(new Error(`mknod ${path}: errno ${errno}`), { errno }));
  }
}

/** Linux's encoding of dev_t (see <sys/sysmacros.h>). */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** The inverse of makedev. */
export function splitDev(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}
