import { freezerFor, isFrozen, withFrozen } from '../runtime/cgroups/freezer';
import type { Container } from '../runtime/container';
import type { RootfsStore } from '../storage';

/**
 * Run `body` (a snapshot or clone of the container's rootfs) so that it sees
 * one instant: as is when the container is not running or the driver's
 * snapshots are atomic (btrfs, zfs, lvm); otherwise (dir: a copy, file by
 * file) with every process of the container frozen around it.
 */
export async function consistently<T>(c: Container, store: RootfsStore, running: boolean, body: () => Promise<T>): Promise<T> {
  if (!running || store.capabilities.atomicSnapshot) return body();
  const cg = c.cgroups();
  if (isFrozen(cg)) return body(); // frozen by `tsvz freeze`: it stays so
  return withFrozen(freezerFor(cg), body);
}
