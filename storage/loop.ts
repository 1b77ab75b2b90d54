import fs = require('node:fs');
import { readMountInfo } from '../lib/mountinfo';
import { run } from '../lib/process';
import type { UndoStack } from '../lib/undo';

/**
 * Loop-backed pools (LXD's default): a sparse image file under the root,
 * attached to a loop device, formatted and mounted. Each step registers its
 * undo, so a failed `pool create` leaves no loop device, mount or image.
 */

/** A sparse image of `size` bytes; `undo` removes it. */
export function createImage(image: string, size: number, undo: UndoStack): void {
  const fd = fs.openSync(image, 'wx', 0o600);
  undo.add(`remove ${image}`, () => fs.rmSync(image, { force: true }));
  try {
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Attach the image to a free loop device; `undo` detaches it. */
export async function attachLoop(image: string, undo?: UndoStack): Promise<string> {
  const dev = (await run('losetup', ['--find', '--show', image])).stdout.trim();
  undo?.add(`detach ${dev}`, async () => { await run('losetup', ['-d', dev]); });
  return dev;
}

/** Loop devices backed by this image (none when it is not attached). */
export async function loopDevicesOf(image: string): Promise<string[]> {
  const out = (await run('losetup', ['-j', image], { allowFail: true })).stdout;
  return out.split('\n').map((l) => l.split(':')[0].trim()).filter(Boolean);
}

/** The image's loop device, attaching it when needed (after a reboot). */
export async function ensureLoop(image: string): Promise<string> {
  return (await loopDevicesOf(image))[0] ?? attachLoop(image);
}

export async function detachLoops(image: string): Promise<void> {
  for (const dev of await loopDevicesOf(image)) await run('losetup', ['-d', dev], { allowFail: true });
}

export function isMountpoint(dir: string): boolean {
  return mountFsType(dir) !== undefined;
}

/** The filesystem type mounted exactly at `dir` (the last mount there wins), or undefined. */
export function mountFsType(dir: string): string | undefined {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return undefined;
  }
  return readMountInfo().filter((m) => m.mountPoint === real).pop()?.fsType;
}

/** Mount `source` on `dir` (creating it); `undo` unmounts. */
export async function mount(source: string, dir: string, args: string[] = [], undo?: UndoStack): Promise<void> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  await run('mount', [...args, source, dir]);
  undo?.add(`unmount ${dir}`, () => unmount(dir));
}

/** Unmount `dir` if mounted; a busy mount is an error (a lazy unmount would hide it). */
export async function unmount(dir: string): Promise<void> {
  if (isMountpoint(dir)) await run('umount', [dir]);
}
