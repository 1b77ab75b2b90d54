import type { Readable } from 'node:stream';
import { changesSince, indexTree, packTreeChanges, packTreeLive } from '../archive/tree-delta';
import type { Container } from '../runtime/container';
import { DEFAULT_POOL, SendFormat, withStore } from '../storage';

/**
 * The source's two passes over a container's files: the whole rootfs while
 * it runs, then, frozen, only what changed since. In the pool's native
 * format (btrfs send, zfs send) the passes are two storage snapshots, the
 * second sent as the difference from the first; in the tar stream, a live
 * walk, then the entries changed since and the paths gone.
 */
export interface FilePasses {
  readonly format: SendFormat;
  /** The first pass, while the container runs. */
  running(): Promise<Readable>;
  /** Once frozen: the paths gone since (tar only) and the changes. */
  frozen(): Promise<{ removed: string[]; stream: Readable }>;
  /** Remove what the passes made here (snapshots); idempotent, safe after a crash. */
  release(): Promise<void>;
}

/** The snapshots a native migration makes on both sides, named after it (so a later command finds them from the journal). */
export function migrationSnapshots(id: string): { running: string; frozen: string } {
  const tag = `tsvz-migrate-${id.slice(0, 12)}`;
  return { running: `${tag}-running`, frozen: `${tag}-frozen` };
}

/** The stream formats container `c`'s pool sends, preferred first (always ending with tar). */
export async function offeredFormats(c: Container): Promise<SendFormat[]> {
  return withStore(c.root, c.config.pool ?? DEFAULT_POOL, async (store) => store.capabilities.sendFormats);
}

export function filePasses(c: Container, rootfs: string, id: string, format: SendFormat): FilePasses {
  return format === 'tar' ? tarPasses(rootfs) : nativePasses(c, id, format);
}

function tarPasses(rootfs: string): FilePasses {
  let first: ReturnType<typeof packTreeLive> | undefined;
  return {
    format: 'tar',
    running: async () => (first = packTreeLive(rootfs)).stream,
    frozen: async () => {
      if (!first) throw new Error('the frozen pass comes after the running one');
      const { changed, removed } = changesSince(first.sent, await indexTree(rootfs));
      return { removed, stream: packTreeChanges(rootfs, changed) };
    },
    release: async () => undefined,
  };
}

function nativePasses(c: Container, id: string, format: SendFormat): FilePasses {
  const snaps = migrationSnapshots(id);
  const pool = c.config.pool ?? DEFAULT_POOL;
  return {
    format,
    running: () => withStore(c.root, pool, async (store) => {
      await store.snapshot(c.name, snaps.running);
      return store.send(c.name, snaps.running, { format });
    }),
    frozen: () => withStore(c.root, pool, async (store) => {
      await store.snapshot(c.name, snaps.frozen);
      return { removed: [], stream: await store.send(c.name, snaps.frozen, { format, parent: snaps.running }) };
    }),
    release: () => releaseMigrationSnapshots(c, id),
  };
}

/** The snapshots migration `id` made of `c`'s volume, if any are left (the newest first: zfs and btrfs take any order). */
export async function releaseMigrationSnapshots(c: Container, id: string): Promise<void> {
  const snaps = migrationSnapshots(id);
  await withStore(c.root, c.config.pool ?? DEFAULT_POOL, async (store) => {
    const held = new Set((await store.listSnapshots(c.name)).map((s) => s.name));
    for (const snap of [snaps.frozen, snaps.running]) if (held.has(snap)) await store.deleteSnapshot(c.name, snap);
  });
}
