import fs = require('node:fs');
import { pollUntil } from '../../lib/poll';
import { errnoCode, SystemError } from '../../lib/errors';

/**
 * Reading and writing cgroup control files. Reads never throw (a missing
 * file is a missing counter); writes throw a SystemError naming the file.
 */

/** C strerror() wording, which is what people search for ("Device or resource busy"). */
const STRERROR: Record<string, string> = {
  EACCES: 'Permission denied',
  EAGAIN: 'Resource temporarily unavailable',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EINVAL: 'Invalid argument',
  EISDIR: 'Is a directory',
  ENODEV: 'No such device',
  ENOENT: 'No such file or directory',
  ENOSPC: 'No space left on device',
  ENOTDIR: 'Not a directory',
  ENOTEMPTY: 'Directory not empty',
  EOPNOTSUPP: 'Operation not supported',
  EPERM: 'Operation not permitted',
  EROFS: 'Read-only file system',
  ESRCH: 'No such process',
};

function strerror(err: unknown): string {
  const code = errnoCode(err);
  return (code && STRERROR[code]) ?? (err instanceof Error ? err.message : String(err));
}

export function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The first integer in the file ("123\n"). */
export function readNumber(file: string): number | undefined {
  const text = readText(file)?.trim();
  if (!text || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

/** v1 shows "no limit" as a huge page-aligned number, v2 as "max": both → undefined. */
export function readLimit(file: string): number | undefined {
  const n = readNumber(file);
  return n === undefined || n < 0 || n >= 2 ** 60 ? undefined : n;
}

/** The value of a "key value" line (memory.events, memory.oom_control, cpu.stat). */
export function readKeyed(file: string, key: string): number | undefined {
  for (const line of (readText(file) ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined && /^\d+$/.test(v)) return Number(v);
  }
  return undefined;
}

export function readWords(file: string): Set<string> {
  return new Set((readText(file) ?? '').split(/\s+/).filter(Boolean));
}

export function readPids(procsFile: string): number[] {
  return (readText(procsFile) ?? '').split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

/**
 * Write a control file. An array is written as one write() per entry on one
 * open file: the kernel treats each write as one command (devices.allow),
 * and a fake file in a test keeps every line. Never creates the file: a
 * missing control file means a missing controller, not something to invent.
 */
export function writeControl(file: string, value: string | readonly string[], what: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
    for (const v of typeof value === 'string' ? [value] : value) fs.writeSync(fd, `${v}\n`);
  } catch (err) {
    throw new SystemError(`cannot ${what}: write ${file}: ${strerror(err)}`, err);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** For optional files (cgroup.kill, cgroup.freeze): absent means the kernel lacks the feature. */
export function writeControlIfPresent(file: string, value: string, what: string): void {
  if (fs.existsSync(file)) writeControl(file, value, what);
}

export function makeDir(dir: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      fs.mkdirSync(dir, { recursive: true });
      return;
    } catch (err) {
      // Another container's clean-up removed the shared parent (tsvz/) between our two mkdirs: again.
      if (errnoCode(err) === 'ENOENT' && attempt < 5) continue;
      throw new SystemError(`cannot create cgroup: mkdir ${dir}: ${strerror(err)}`, err);
    }
  }
}

/** rmdir a cgroup; while its last processes are still exiting the kernel says EBUSY, so retry. */
export async function removeDir(dir: string, timeoutMs: number): Promise<void> {
  let last: unknown;
  const removed = await pollUntil(() => {
    try {
      fs.rmdirSync(dir);
      return true;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') throw new SystemError(`cannot remove cgroup: rmdir ${dir}: ${strerror(err)}`, err);
      last = err;
      return false;
    }
  }, { timeoutMs, maxMs: 20 });
  if (!removed) throw new SystemError(`cannot remove cgroup: rmdir ${dir}: ${strerror(last)}`, last);
}

/** rmdir a shared parent if nobody else uses it; in use (or gone) is fine. */
export function removeDirIfUnused(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EBUSY') return;
    throw new SystemError(`cannot remove cgroup: rmdir ${dir}: ${strerror(err)}`, err);
  }
}
