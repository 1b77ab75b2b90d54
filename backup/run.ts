import type { Root } from '../lib/root';
import { Container } from '../runtime/container';
import { SnapshotCatalog } from '../storage';
import { pruneSnapshots } from './prune';
import type { RunBody } from './scheduler';
import type { Schedule } from './schedules';
import { connectRemote, shipSnapshot } from './ship';
import { trace } from '../lib/trace';

/**
 * One backup run of a schedule, once executeRun holds the container: take
 * the snapshot the mode asks for, ship it when the schedule has a target,
 * then prune (only after the snapshot succeeded; a failed send still
 * prunes, with its base held). The snapshot's name is the schedule's and
 * the time; a clock that went back and lands on a name in use gets a
 * suffix, never the old snapshot.
 */
export function backupBody(root: Root): RunBody {
  return async (s: Schedule) => {
    const c = Container.open(root, s.container);
    trace('backup: run');
    // The TLS handshake goes on while the snapshot is taken. A remote gone from
    // remotes.json fails the send below, after the snapshot, not the snapshot.
    const client = s.to ? await connectRemote(root, s.to).catch(() => undefined) : undefined;
    const connecting = client?.connect(30_000).catch(() => undefined);
    let snap: string;
    try {
      snap = await takeSnapshot(c, s);
    } catch (err) {
      client?.close();
      throw err;
    }
    trace('backup: snapshot taken');
    let shipped: number | undefined;
    let shipError: Error | undefined;
    if (s.to) {
      try {
        await connecting;
        shipped = (await shipSnapshot(c, snap, s.to, { schedule: s.name, keep: s.keep, timeZone: s.timeZone, bandwidth: s.bandwidth, ...(client ? { client } : {}) })).bytes;
      } catch (err) {
        shipError = err as Error;
      } finally {
        client?.close();
      }
    }
    trace('backup: shipped');
    const rows = await pruneSnapshots(c, [{ schedule: s.name, keep: s.keep, timeZone: s.timeZone }]);
    trace('backup: pruned');
    const pruned = rows.filter((r) => r.action === 'remove' && !r.error).map((r) => r.name);
    if (shipError) {
      shipError.message = `snapshot ${snap} taken, but sending it to ${s.to} failed: ${shipError.message}`;
      throw shipError;
    }
    return { snapshot: snap, ...(shipped !== undefined ? { bytesShipped: shipped } : {}), pruned };
  };
}

async function takeSnapshot(c: Container, s: Schedule): Promise<string> {
  const { createSnapshot, newSnapshotName } = await import('../ops/snapshot');
  const base = `${s.name}-${newSnapshotName()}`;
  const catalog = new SnapshotCatalog(c.paths.dir);
  let name = base;
  for (let i = 2; catalog.find(name); i++) name = `${base}-${i}`;
  const make = () => createSnapshot(c, name, { stateful: s.stateful, schedule: s.name });
  const running = c.state().status === 'running';
  if (!running || s.mode === 'snapshot') return (await make()).name;
  if (s.mode === 'suspend') {
    const { freezeContainer, unfreezeContainer } = await import('../ops/freeze');
    await freezeContainer(c);
    try {
      return (await make()).name;
    } finally {
      await unfreezeContainer(c);
    }
  }
  const { stopContainer } = await import('../ops/stop');
  const { startContainer } = await import('../ops/start');
  await stopContainer(c);
  try {
    return (await make()).name;
  } finally {
    await startContainer(c);
  }
}
