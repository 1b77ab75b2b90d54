import type { Container } from '../runtime/container';
import type { Root } from '../lib/root';
import { NotFoundError } from '../lib/errors';
import type { RemoteClient } from '../daemon/client';
import { Backups } from '../daemon/proto';
import { canSendIncremental, SendFormat, SnapshotCatalog, withStore } from '../storage';
import { formatKeepPolicy, KeepPolicy } from './retention';
import { framed } from './service';
import { ShipState } from './ship-state';
import { throttle } from './throttle';
import { trace } from '../lib/trace';

/**
 * Shipping one snapshot to a remote's backup store (tsvz.v1.Backups over the
 * daemons' mutual TLS). The format is the container pool's most preferred
 * one the store takes; a native format is sent as the difference from the
 * newest older snapshot both sides hold (held from pruning here, the
 * "base"), tar is always full. While the send runs the snapshot is held
 * too. A send that breaks leaves the base as it was: the next run sends
 * from it again.
 */

export interface ShipResult {
  remote: string;
  format: SendFormat;
  parent?: string;
  /** Everything shipped: the files, and the memory of a stateful snapshot. */
  bytes: number;
  /** Of `bytes`, the memory's. */
  stateBytes?: number;
  prunedThere: string[];
}

/** The memory of stateful snapshot `snap` (its CRIU images) to the store, as a checkpoint archive signed by this host. */
async function shipState(c: Container, snap: string, createdAt: string, client: RemoteClient): Promise<number> {
  const { CheckpointCatalog } = await import('../checkpoint/catalog');
  const { checkpointManifest, packCheckpoint } = await import('../checkpoint/archive');
  const { hostSigner } = await import('../daemon/signers');
  const catalog = new CheckpointCatalog(c, 'snapshot-state');
  const meta = catalog.get(snap);
  const dir = catalog.dir(snap);
  await (await import('../ops/export')).describeCpuIn(dir); // the importer checks its CPU against this one
  const manifest = await checkpointManifest(dir, meta, c.config);
  const stream = packCheckpoint(dir, manifest, await hostSigner(c.root));
  try {
    const answer = await client.clientStream(Backups.ReceiveState, framed({ container: c.name, snapshot: snap, createdAt, configJson: '' }, stream, 'checkpoint'));
    trace('backup: memory received there');
    return answer.bytes ?? 0;
  } finally {
    stream.destroy();
  }
}

export async function connectRemote(root: Root, remote: string): Promise<RemoteClient> {
  const { RemoteClient } = await import('../daemon/client');
  return RemoteClient.connect(root, remote);
}

export async function shipSnapshot(c: Container, snap: string, remote: string, opts: { schedule?: string; keep?: KeepPolicy; timeZone?: string; bandwidth?: number; client?: RemoteClient } = {}): Promise<ShipResult> {
  const client = opts.client ?? await connectRemote(c.root, remote);
  const state = new ShipState(c.root);
  try {
    const rec = new SnapshotCatalog(c.paths.dir).find(snap);
    if (!rec) throw new NotFoundError(`container ${c.name} has no snapshot "${snap}"`);
    const offer = await client.unary(Backups.Offer, { container: c.name }, { timeoutMs: 30_000 });
    trace('backup: offer answered');
    const theirs = new Set(offer.snapshots ?? []);
    if (theirs.has(snap)) {
      await state.update(c.name, remote, (e) => ({ ...e, base: snap, baseAt: new Date().toISOString() }));
      return { remote, format: 'tar', bytes: 0, prunedThere: [] };
    }
    await state.update(c.name, remote, (e) => ({ ...e, sending: { snapshot: snap, pid: process.pid, since: new Date().toISOString() } }));
    try {
      return await withStore(c.root, c.config.pool, async (store) => {
        const formats = offer.formats ?? ['tar'];
        const format: SendFormat = store.capabilities.sendFormats.find((f) => f !== 'tar' && formats.includes(f)) ?? 'tar';
        let parent: string | undefined;
        if (canSendIncremental(store.capabilities, format)) {
          const older = new SnapshotCatalog(c.paths.dir).list().filter((s) => s.createdAt < rec.createdAt && theirs.has(s.name) && !s.missingSince);
          parent = older.at(-1)?.name;
        }
        const sent = await store.send(c.name, snap, { format, ...(parent ? { parent } : {}) });
        const stream = opts.bandwidth ? sent.pipe(throttle(opts.bandwidth)) : sent;
        if (stream !== sent) sent.on('error', (err) => stream.destroy(err));
        const messages = framed({
          container: c.name, snapshot: snap, createdAt: rec.createdAt, parent, configJson: JSON.stringify(c.config),
          schedule: opts.schedule, keep: opts.keep ? formatKeepPolicy(opts.keep) : undefined, timeZone: opts.timeZone,
        }, stream, format);
        let answer;
        try {
          answer = await client.clientStream(Backups.Receive, messages);
          trace('backup: received and registered there');
        } finally {
          stream.destroy();
          sent.destroy();
        }
        await state.update(c.name, remote, (e) => ({ ...e, base: snap, baseAt: new Date().toISOString() }));
        // A stateful snapshot's memory follows its files: a signed checkpoint archive, which the store checks whole before it keeps it.
        const stateBytes = rec.stateful ? await shipState(c, snap, rec.createdAt, client) : 0;
        return { remote, format, ...(parent ? { parent } : {}), bytes: (answer.bytes ?? 0) + stateBytes, stateBytes, prunedThere: answer.pruned ?? [] };
      });
    } finally {
      await state.update(c.name, remote, ({ sending: _done, ...e }) => e);
    }
  } finally {
    if (!opts.client) client.close();
  }
}
