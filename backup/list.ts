import type { Root } from '../lib/root';
import { Container } from '../runtime/container';
import { Backups } from '../daemon/proto';
import { validateName } from '../lib/names';
import { ShipState } from './ship-state';
import { BackupStore } from './store';
import { connectRemote } from './ship';

/** One line of `backup list`: a snapshot here, a backup in this host's store, or one in a remote's. */
export interface BackupRow {
  /** 'local' (a snapshot of the container here), 'store' (this host's backup store), or the remote's name. */
  where: string;
  snapshot: string;
  createdAt: string;
  schedule?: string;
  format?: string;
  bytes?: number;
  sha256?: string;
  notes: string[];
}

export async function listBackups(root: Root, container: string, opts: { on?: string } = {}): Promise<BackupRow[]> {
  validateName(container);
  if (opts.on) {
    const client = await connectRemote(root, opts.on);
    try {
      const r = await client.unary(Backups.List, { container }, { timeoutMs: 30_000 });
      return (r.backups ?? []).map((b) => ({
        where: opts.on!, snapshot: b.snapshot ?? '', createdAt: b.createdAt ?? '', schedule: b.schedule, format: b.format, bytes: b.bytes, sha256: b.sha256,
        notes: [b.parent ? `incremental from ${b.parent}` : 'full', ...(b.stateful ? ['with memory'] : [])],
      }));
    } finally {
      client.close();
    }
  }
  const rows: BackupRow[] = [];
  const c = new Container(root, container);
  if (c.exists()) {
    const { listSnapshots } = await import('../ops/snapshot');
    const holds = new ShipState(root).holdsFor(container);
    for (const s of await listSnapshots(c)) {
      const notes = [];
      if (s.protected) notes.push('protected');
      if (s.stateful) notes.push('stateful');
      if (s.status === 'missing') notes.push(`MISSING since ${s.missingSince}`);
      const hold = holds.get(s.name);
      if (hold) notes.push(hold);
      rows.push({ where: 'local', snapshot: s.name, createdAt: s.createdAt, schedule: s.schedule, notes });
    }
  }
  for (const b of new BackupStore(root).list({ container })) {
    rows.push({ where: 'store', snapshot: b.snapshot, createdAt: b.createdAt, schedule: b.schedule, format: b.format, bytes: b.bytes, sha256: b.sha256, notes: [`from ${b.sourceName}`, b.parent ? `incremental from ${b.parent}` : 'full', ...(b.state ? ['with memory'] : [])] });
  }
  return rows;
}
