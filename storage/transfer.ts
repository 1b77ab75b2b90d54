import type { Readable } from 'node:stream';
import { AlreadyExistsError, NotSupportedError } from '../lib/errors';
import { withUndo } from '../lib/undo';
import type { Pool, SendOptions, StorageDriver } from './driver';
import { unpackTree } from '../archive/tree-tar';
import { validateSnapshotName, validateVolumeName } from './validate';

/** What every driver's send/receive shares: format checks and receiving the universal tar stream. */

export function checkSendOptions(driver: StorageDriver, opts: SendOptions): void {
  if (!driver.capabilities.sendFormats.includes(opts.format)) {
    throw new NotSupportedError(`${driver.name} pools cannot send or receive ${opts.format} streams`, `use one of: ${driver.capabilities.sendFormats.join(', ')}`);
  }
  if (opts.parent === undefined) return;
  validateSnapshotName(opts.parent);
  if (opts.format === 'tar') {
    throw new NotSupportedError('tar streams are always full: an incremental transfer needs a native format', 'send without a parent, or between pools of the same driver');
  }
}

/** Before a receive reads anything: the names it would create, and the stream's format. */
export function checkReceive(driver: StorageDriver, vol: string, snap: string, opts: SendOptions): void {
  validateVolumeName(vol);
  validateSnapshotName(snap);
  checkSendOptions(driver, opts);
}

/**
 * A full tar stream becomes a new volume: create it, unpack, snapshot. Any
 * failure (a broken stream, a full pool) deletes the half-received volume.
 */
export async function receiveTar(pool: Pool, vol: string, snap: string, input: Readable): Promise<void> {
  try {
    if ((await pool.listVolumes()).includes(vol)) {
      throw new AlreadyExistsError(`volume ${vol} already exists in pool ${pool.record.name}`, 'a full stream creates the volume: delete it first or receive under another name');
    }
    await withUndo(async (undo) => {
      const dir = await pool.createVolume(vol);
      undo.add(`delete volume ${vol}`, () => pool.deleteVolume(vol));
      await unpackTree(input, dir);
      await pool.snapshot(vol, snap);
    });
  } catch (err) {
    input.destroy(); // stop the sender
    throw err;
  }
}
