import type { Command } from 'commander';
import { openContainer, printJson, printTable } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description("snapshots of a container's rootfs: create (the default), list, rollback, rm, protect, unprotect");

  snapshot
    .command('create', { isDefault: true })
    .description('snapshot the rootfs, running or not (the default: `tsvz snapshot p1 [NAME]`)')
    .argument('<name>', 'container name')
    .argument('[snapshot]', 'snapshot name (default: a timestamp)')
    .option('--stateful', 'memory too (CRIU, the container keeps running): rollback brings it back running')
    .action(async (name: string, snap: string | undefined, o, cmd: Command) => {
      const rec = remoteOf(cmd)
        ? await onRemote(cmd, (client, api) => client.unary(api.Containers.Snapshot, { name, snapshot: snap, stateful: o.stateful === true }))
        : await (await import('../../ops/snapshot')).createSnapshot(openContainer(cmd, name), snap, { stateful: o.stateful === true });
      print(`${rec.name}\n`);
    });

  snapshot
    .command('list')
    .alias('ls')
    .description("a container's snapshots, checked against the storage (MISSING: deleted behind tsvz's back)")
    .argument('<name>', 'container name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { listSnapshots } = await import('../../ops/snapshot');
      const { formatBytes } = await import('../../lib/units');
      const all = await listSnapshots(openContainer(cmd, name));
      if (o.json) return printJson(all);
      const bytes = (n?: number) => (n === undefined ? '-' : formatBytes(n));
      printTable([
        ['NAME', 'CREATED', 'STATEFUL', 'PROTECTED', 'SIZE', 'REFERENCED', 'STATUS'],
        ...all.map((s) => [s.name, s.createdAt, s.stateful ? 'yes' : 'no', s.protected ? 'yes' : 'no', bytes(s.sizeBytes), bytes(s.referencedBytes), s.status === 'missing' ? `MISSING (gone from pool ${s.pool} since ${s.missingSince})` : s.adopted ? 'ok (found in the pool)' : 'ok']),
      ]);
    });

  snapshot
    .command('rollback')
    .description('make the rootfs the snapshot again (the container must be stopped, or --force)')
    .argument('<name>', 'container name')
    .argument('<snapshot>', 'snapshot name')
    .option('-f, --force', 'stop a running container, roll back, start it again')
    .action(async (name: string, snap: string, o, cmd: Command) => {
      const { rollbackSnapshot } = await import('../../ops/snapshot');
      const r = await rollbackSnapshot(openContainer(cmd, name), snap, { force: o.force === true });
      print(`rolled back ${name} to ${snap}${r.restarted ? ' (restarted)' : ''}\n`);
    });

  snapshot
    .command('rm')
    .description('remove a snapshot (refused while a clone was made from it)')
    .argument('<name>', 'container name')
    .argument('<snapshot>', 'snapshot name')
    .action(async (name: string, snap: string, _o, cmd: Command) => {
      const { removeSnapshot } = await import('../../ops/snapshot');
      const r = await removeSnapshot(openContainer(cmd, name), snap);
      print(`removed ${snap}${r.wasMissing ? ' (it was already gone from the pool)' : ''}\n`);
    });

  for (const on of [true, false]) {
    snapshot
      .command(on ? 'protect' : 'unprotect')
      .description(on ? 'keep a snapshot from retention and `snapshot rm`' : 'let retention and `snapshot rm` remove it again')
      .argument('<name>', 'container name')
      .argument('<snapshot>', 'snapshot name')
      .action(async (name: string, snap: string, _o, cmd: Command) => {
        const { setProtected } = await import('../../backup/prune');
        const changed = await setProtected(openContainer(cmd, name), snap, on);
        print(`${snap} ${changed ? 'is now' : 'was already'} ${on ? 'protected' : 'unprotected'}\n`);
      });
  }
}
