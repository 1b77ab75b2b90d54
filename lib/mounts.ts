import { readMountInfo } from './mountinfo';
import { run } from './process';

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = readMountInfo().map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmount everything at or below `dir` (lazily, so a busy mount never blocks cleanup). */
export async function unmountUnder(dir: string): Promise<void> {
  for (const point of mountsUnder(dir)) await run('umount', ['-l', point], { allowFail: true });
}

/** Is something mounted exactly at `dir`? */
export function isMountpoint(dir: string): boolean {
  return readMountInfo().some((m) => m.mountPoint === dir);
}
