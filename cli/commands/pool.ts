import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  const pool = program
    .command('pool')
    .description('storage pools for container root filesystems: dir, btrfs, zfs, lvm ("default" is a directory under the root)');

  pool
    .command('create')
    .description('create a pool: on an existing --source, or loop-/file-backed under the root with --size')
    .argument('<name>', 'pool name')
    .requiredOption('--driver <driver>', 'dir | btrfs | zfs | lvm')
    .option('--source <source>', 'dir: an empty directory; btrfs: an empty directory on a btrfs; zfs: a dataset (tank/tsvz); lvm: a volume group')
    .option('--size <size>', 'size of a loop image (btrfs, lvm) or file-backed zpool (zfs) under the root, e.g. 4G')
    .action(async (name: string, o, cmd: Command) => {
      const { parseSize } = await import('../../lib/units');
      const { createStoragePool } = await import('../../ops/pool');
      const size = o.size !== undefined ? parseSize(o.size, '--size') : undefined;
      await createStoragePool(rootOf(cmd), name, { driver: o.driver, source: o.source, size });
      print(`created pool ${name}\n`);
    });

  pool
    .command('list')
    .alias('ls')
    .description('pools with their driver, source, space and containers')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { listStoragePools } = await import('../../ops/pool');
      const { formatBytes } = await import('../../lib/units');
      const all = await listStoragePools(rootOf(cmd));
      if (o.json) return printJson(all);
      const bytes = (n?: number) => (n === undefined ? '-' : formatBytes(n));
      printTable([
        ['NAME', 'DRIVER', 'SOURCE', 'SIZE', 'USED', 'CONTAINERS'],
        ...all.map((p) => [p.name, p.driver, p.source, bytes(p.sizeBytes), p.error ? `error: ${p.error}` : bytes(p.usedBytes), String(p.containers.length)]),
      ]);
    });

  pool
    .command('info')
    .description("a pool's driver, what it can do, its space, volumes and containers")
    .argument('<name>', 'pool name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { storagePoolInfo } = await import('../../ops/pool');
      const { formatBytes } = await import('../../lib/units');
      const info = await storagePoolInfo(rootOf(cmd), name);
      if (o.json) return printJson(info);
      const caps = info.capabilities;
      printTable([
        ['name', info.name + (info.builtin ? ' (built in)' : '')],
        ['driver', info.driver],
        ['source', info.source],
        ['size', info.sizeBytes === undefined ? '-' : formatBytes(info.sizeBytes)],
        ['used', info.usedBytes === undefined ? '-' : formatBytes(info.usedBytes)],
        ['snapshots', `${caps.atomicSnapshot ? 'atomic' : 'copied (the container is frozen meanwhile)'}, rollback to ${caps.rollbackToAny ? 'any' : 'the newest only'}`],
        ['clones', caps.cowClone ? 'copy-on-write' : 'full copies'],
        ['send formats', caps.sendFormats.join(', ')],
        ['containers', info.containers.join(', ') || '-'],
        ['volumes', info.volumes.join(', ') || '-'],
        ['created', info.createdAt ?? '-'],
      ]);
    });

  pool
    .command('rm')
    .description('remove a pool (refused while a container uses it; never removes a --source itself)')
    .argument('<name>', 'pool name')
    .option('-f, --force', 'also delete volumes no container owns; forget a pool whose storage is gone')
    .action(async (name: string, o, cmd: Command) => {
      const { removeStoragePool } = await import('../../ops/pool');
      await removeStoragePool(rootOf(cmd), name, { force: o.force === true });
      print(`removed pool ${name}\n`);
    });
}
