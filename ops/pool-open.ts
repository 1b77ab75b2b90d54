import type { Container } from '../runtime/container';

/**
 * Make sure the pool holding a container's rootfs is attached and mounted
 * (after a reboot: loop device, zpool import, mount) before anything uses
 * the rootfs. The storage modules load only for non-default pools.
 */
export async function openPoolOf(c: Container): Promise<void> {
  if (c.config.pool === 'default') return;
  const { withStore } = require('../storage') as typeof import('../storage');
  await withStore(c.root, c.config.pool, async () => undefined);
}
