import { PassThrough, Readable } from 'node:stream';
import { NotSupportedError } from '../lib/errors';
import { withUndo } from '../lib/undo';
import type { Pool, SendOptions, StorageDriver } from './driver';
import { StorageError } from './errors';
import { FULL_STREAM_HINT, requireNoVolume } from './presence';
import { validateSnapshotName, validateVolumeName } from './validate';

/**
 * What every driver's send/receive shares: format checks, holding a
 * receive's input, sends that end only once released, and receiving the
 * universal tar stream.
 */

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
 * A receive's input, held from the moment receive() has it: the checks made
 * before its first byte is read await tools, and a sender that breaks
 * meanwhile must fail the receive with its own error, not the process.
 * Returns the check to make right before the input is read (in the same
 * tick as whatever reads it, so no failure falls between the two).
 */
export function holdInput(input: Readable): () => void {
  input.on('error', () => { /* kept in input.errored, thrown by the check */ });
  return () => {
    if (input.errored) throw input.errored;
    if (input.destroyed) throw new StorageError('the stream was closed before it was read');
  };
}

/**
 * `stream` (a send), ending only once `release` has finished (a temporary
 * clone destroyed, a snapshot unmounted): a receiver that has the last byte
 * may act on the sender's volume at once. A failed release fails the stream;
 * a reader that goes away destroys `stream`, which releases on its own.
 */
export function endingAfter(stream: Readable, release: () => Promise<void>): Readable {
  const out = new PassThrough();
  stream.pipe(out, { end: false });
  stream.on('end', () => void release().then(() => out.end(), (err: Error) => out.destroy(err)));
  stream.on('error', (err) => out.destroy(err));
  out.on('close', () => {
    if (!stream.destroyed) stream.destroy();
  });
  return out;
}

/** `fn` for cleanups several parties may ask for: callers meanwhile share its run, later ones run it again. */
export function sharedRun(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn().finally(() => { running = undefined; }));
}

/**
 * A full tar stream becomes a new volume: create it, unpack, snapshot. Any
 * failure (a broken stream, a full pool) deletes the half-received volume.
 */
export async function receiveTar(pool: Pool, vol: string, snap: string, input: Readable): Promise<void> {
  const readable = holdInput(input);
  try {
    await requireNoVolume(pool, vol, FULL_STREAM_HINT);
    // Loaded here: the tar modules are for transfers, not for every command on the default pool.
    const { unpackTree } = require('../archive/tree-tar') as typeof import('../archive/tree-tar');
    await withUndo(async (undo) => {
      const dir = await pool.createVolume(vol);
      undo.add(`delete volume ${vol}`, () => pool.deleteVolume(vol));
      readable();
      await unpackTree(input, dir);
      await pool.snapshot(vol, snap);
    });
  } catch (err) {
    input.destroy(); // stop the sender
    throw err;
  }
}
