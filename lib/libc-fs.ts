import { SystemError } from './errors';
import { lazyLibc } from './koffi';

/**
 * The few libc calls storage needs that node:fs lacks: an atomic swap of two
 * paths (renameat2 RENAME_EXCHANGE) and extended attributes (l*xattr, which
 * act on symlinks themselves). Bound through koffi on first use.
 */

const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;
const XATTR_CREATE = 1;
const ERANGE = 34;
const ENODATA = 61;
const ENOTSUP = 95;

interface Libc {
  renameat2(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number): number;
  llistxattr(path: string, list: Buffer | null, size: number): number | bigint;
  lgetxattr(path: string, name: string, value: Buffer | null, size: number): number | bigint;
  lsetxattr(path: string, name: string, value: Buffer, size: number, flags: number): number;
  utimensat(dirfd: number, path: string, times: Buffer, flags: number): number;
  errno(): number;
}

const libc = lazyLibc((lib, koffi): Libc => ({
  renameat2: lib.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)'),
  llistxattr: lib.func('intptr_t llistxattr(const char *path, void *list, size_t size)'),
  lgetxattr: lib.func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)'),
  lsetxattr: lib.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
  utimensat: lib.func('int utimensat(int dirfd, const char *path, const void *times, int flags)'),
  errno: () => koffi.errno() as number,
}));

function fail(call: string, path: string, errno: number): never {
  const err = Object.assign(new Error(`${call} ${path}: errno ${errno}`), { errno, code: errno === ENOTSUP ? 'ENOTSUP' : undefined });
  throw new SystemError(`${call} ${path} failed (errno ${errno})`, err);
}

/** Swap two existing paths in one step: readers see either the old or the new tree, never neither. */
export function exchangePaths(a: string, b: string): void {
  const l = libc();
  if (l.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) !== 0) fail('renameat2(RENAME_EXCHANGE)', `${a} <-> ${b}`, l.errno());
}

/**
 * A path's extended attributes (of a symlink itself, not its target), or
 * undefined when the filesystem does not support them (zfs-fuse, some FUSE).
 */
export function readXattrs(path: string): Map<string, Buffer> | undefined {
  const l = libc();
  for (;;) {
    const size = Number(l.llistxattr(path, null, 0));
    if (size < 0) {
      const errno = l.errno();
      if (errno === ENOTSUP) return undefined;
      fail('llistxattr', path, errno);
    }
    const names = Buffer.alloc(size);
    const got = Number(l.llistxattr(path, names, size));
    if (got < 0) {
      if (l.errno() === ERANGE) continue; // grew in between
      fail('llistxattr', path, l.errno());
    }
    const result = new Map<string, Buffer>();
    for (const name of names.subarray(0, got).toString('utf8').split('\0').filter(Boolean)) {
      const value = getXattr(l, path, name);
      if (value) result.set(name, value);
    }
    return result;
  }
}

function getXattr(l: Libc, path: string, name: string): Buffer | undefined {
  for (;;) {
    const size = Number(l.lgetxattr(path, name, null, 0));
    if (size < 0) {
      if (l.errno() === ENODATA) return undefined; // removed in between
      fail('lgetxattr', `${path} ${name}`, l.errno());
    }
    const value = Buffer.alloc(size);
    const got = Number(l.lgetxattr(path, name, value, size));
    if (got >= 0) return value.subarray(0, got);
    if (l.errno() !== ERANGE) fail('lgetxattr', `${path} ${name}`, l.errno());
  }
}

/** Set one attribute; a filesystem without xattr support throws a SystemError with errno ENOTSUP (95). */
export function setXattr(path: string, name: string, value: Buffer, opts: { create?: boolean } = {}): void {
  const l = libc();
  if (l.lsetxattr(path, name, value, value.length, opts.create ? XATTR_CREATE : 0) !== 0) fail('lsetxattr', `${path} ${name}`, l.errno());
}

export const ERRNO_ENOTSUP = ENOTSUP;

const AT_SYMLINK_NOFOLLOW = 0x100;

/** Set a path's atime and mtime to `ns` nanoseconds exactly (of a symlink itself); fs.lutimes takes a double, good to ~1 µs. */
export function setTimesNs(path: string, ns: bigint): void {
  const times = Buffer.alloc(32);
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  for (const off of [0, 16]) {
    times.writeBigInt64LE(sec, off);
    times.writeBigInt64LE(nsec, off + 8);
  }
  const l = libc();
  if (l.utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) !== 0) fail('utimensat', path, l.errno());
}
