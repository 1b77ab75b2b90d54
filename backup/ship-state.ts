import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { withLock } from '../lib/lock';
import type { Root } from '../lib/root';
import { processAlive } from '../lib/proc';

/**
 * What this host has shipped where: per container and remote, the newest
 * snapshot the remote confirmed (the base of the next incremental send,
 * held from pruning), and the send in flight (held too, while its process
 * lives). ROOT/backups/shipped.json, written atomically under a lock.
 */
interface Entry { base?: string; baseAt?: string; sending?: { snapshot: string; pid: number; since: string } }
interface ShipFile { version: 1; containers: Record<string, Record<string, Entry>> }

export class ShipState {
  constructor(private readonly root: Root) {}

  private get file(): string { return path.join(this.root.dir, 'backups', 'shipped.json'); }

  private read(): ShipFile {
    return readJsonIfExists<ShipFile>(this.file) ?? { version: 1, containers: {} };
  }

  entry(container: string, remote: string): Entry {
    return this.read().containers[container]?.[remote] ?? {};
  }

  /** Snapshots of `container` no retention may remove: name → why. */
  holdsFor(container: string): Map<string, string> {
    const holds = new Map<string, string>();
    for (const [remote, e] of Object.entries(this.read().containers[container] ?? {})) {
      if (e.base) holds.set(e.base, `the base ${remote} needs`);
      if (e.sending && processAlive(e.sending.pid)) holds.set(e.sending.snapshot, `being sent to ${remote}`);
    }
    return holds;
  }

  update(container: string, remote: string, change: (e: Entry) => Entry): Promise<void> {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    return withLock(path.join(this.root.locksDir, 'backup-shipped.lock'), 'the shipping record', 10_000, async () => {
      const f = this.read();
      const forContainer = (f.containers[container] ??= {});
      forContainer[remote] = change(forContainer[remote] ?? {});
      await writeJsonAtomic(this.file, f);
    });
  }
}
