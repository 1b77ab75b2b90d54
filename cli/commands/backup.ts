import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  const backup = program
    .command('backup')
    .description('backups: list (the default) and restore');

  backup
    .command('list', { isDefault: true })
    .alias('ls')
    .description("a container's snapshots here (protected, the base a target needs) and its backups in this host's store, or on --on REMOTE's")
    .argument('<name>', 'container name')
    .option('--on <remote>', "the backups of it this host shipped to that remote's store")
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { listBackups } = await import('../../backup/list');
      const rows = await listBackups(rootOf(cmd), name, { on: o.on });
      if (o.json) return printJson(rows);
      printTable([
        ['WHERE', 'SNAPSHOT', 'CREATED', 'SCHEDULE', 'FORMAT', 'BYTES', 'NOTES'],
        ...rows.map((r) => [r.where, r.snapshot, r.createdAt, r.schedule ?? '-', r.format ?? '-', r.bytes === undefined ? '-' : String(r.bytes), r.notes.join(', ') || '-']),
      ]);
    });

  backup
    .command('restore')
    .description('make a container from a backup (or replace an existing one\'s files with it): from this host\'s store, or fetched from --from REMOTE\'s')
    .argument('<name>', 'the backed-up container')
    .argument('<snapshot>', 'the backup (snapshot name)')
    .option('--from <remote>', "fetch it from that remote's backup store")
    .option('--as <newname>', 'restore under this name (default: its own)')
    .option('--pool <pool>', 'pool for the restored rootfs', 'default')
    .option('--force', 'over a running container of that name: stop it, replace its files, start it again')
    .action(async (name: string, snap: string, o, cmd: Command) => {
      const { restoreBackup } = await import('../../backup/restore');
      const r = await restoreBackup(rootOf(cmd), name, snap, { from: o.from, as: o.as, pool: o.pool, force: o.force === true });
      const running = r.running ? ', running' : '';
      print(r.over
        ? `restored ${name}@${snap} over ${r.name}'s files (${r.bytes} bytes, from ${r.from}; its config and address kept${running})\n`
        : `restored ${name}@${snap} as ${r.name} (${r.bytes} bytes, from ${r.from}${running})\n`);
    });
}
