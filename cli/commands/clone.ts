import type { Command } from 'commander';
import { rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('clone')
    .description('a new container from a snapshot of another, or from its current state (copy-on-write where the pool can)')
    .argument('<source>', 'container to clone')
    .argument('<name>', 'name of the new container')
    .option('--snapshot <snapshot>', "clone this snapshot (default: the source's current state)")
    .option('--ip <cidr>', "the clone's address, needed when the source is on a bridge")
    .action(async (source: string, name: string, o, cmd: Command) => {
      const { cloneContainer } = await import('../../ops/clone');
      await cloneContainer(rootOf(cmd), source, name, { snapshot: o.snapshot, ip: o.ip });
      print(`created ${name}\n`);
    });
}
