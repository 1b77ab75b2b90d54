import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';

export function register(program: Command): void {
  const checkpoint = program
    .command('checkpoint')
    .description('dump a running container with CRIU (stops it unless --leave-running); list and remove checkpoints');

  checkpoint
    .command('create', { isDefault: true })
    .description('dump a running container (the default: `tsvz checkpoint p1`)')
    .argument('<name>', 'container name')
    .option('--name <id>', 'checkpoint id (default: a timestamp)')
    .option('--leave-running', 'keep the container running after the dump')
    .option('--tcp-established', 'dump established TCP connections')
    .action(async (name: string, o, cmd: Command) => {
      const { Container } = await import('../../runtime/container');
      const { checkpointContainer } = await import('../../checkpoint/checkpoint');
      const meta = await checkpointContainer(Container.open(rootOf(cmd), name), {
        name: o.name,
        leaveRunning: o.leaveRunning,
        tcpEstablished: o.tcpEstablished,
      });
      process.stdout.write(`${meta.id}\n`);
    });

  checkpoint
    .command('list')
    .description("a container's checkpoints")
    .argument('<name>', 'container name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { Container } = await import('../../runtime/container');
      const { CheckpointCatalog } = await import('../../checkpoint/catalog');
      const { formatBytes } = await import('../../runtime/units');
      const all = new CheckpointCatalog(Container.open(rootOf(cmd), name)).list();
      if (o.json) return printJson(all);
      printTable([
        ['ID', 'CREATED', 'CRIU', 'KERNEL', 'SIZE', 'DUMP MS', 'RUNNING AFTER'],
        ...all.map((m) => [m.id, m.createdAt, m.criuVersion, m.kernel, formatBytes(m.sizeBytes), m.dumpMs.toFixed(0), m.leaveRunning ? 'yes' : 'no']),
      ]);
    });

  checkpoint
    .command('rm')
    .description('remove a checkpoint')
    .argument('<name>', 'container name')
    .argument('<id>', 'checkpoint id')
    .action(async (name: string, id: string, _o, cmd: Command) => {
      const { Container } = await import('../../runtime/container');
      const { CheckpointCatalog } = await import('../../checkpoint/catalog');
      const c = Container.open(rootOf(cmd), name);
      await c.locked(async () => new CheckpointCatalog(c).remove(id));
      process.stdout.write(`removed ${id}\n`);
    });
}
