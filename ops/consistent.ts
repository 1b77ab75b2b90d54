import { freezerFor, isFrozen, withFrozen } from '../runtime/cgroups/freezer';
import type { Container } from '../runtime/container';
import type { RootfsStore } from '../storage';
import { faultPause } from '../lib/fault';
import { withContainerIntent } from './recovery';

/**
 * Run `body` (a snapshot or clone of the container's rootfs) so that it sees
 * one instant: as is when the container is not running or the driver's
 * snapshots are atomic (btrfs, zfs, lvm); otherwise (dir: a copy, file by
 * file) with every process of the container frozen around it; a journal
 * says to thaw it, so a tsvz killed during the copy leaves no frozen
 * container once the next command has run.
 */
export async function consistently<T>(c: Container, store: RootfsStore, running: boolean, body: () => Promise<T>): Promise<T> {
  if (!running || store.capabilities.atomicSnapshot) return body();
  const cg = c.cgroups();
  if (isFrozen(cg)) return body(); // frozen by `tsvz freeze`: it stays so
  return withContainerIntent(c, 'frozen-copy', {}, async (intent) => {
    await intent.will({ kind: 'thaw' });
    return withFrozen(freezerFor(cg), async () => {
      await faultPause('copy:frozen');
      return body();
    });
  });
}
