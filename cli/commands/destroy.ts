import type { Command } from 'commander';
import { rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('destroy')
    .description('remove a container and everything it holds on the host')
    .argument('<name>', 'container name')
    .option('-f, --force', 'kill it if running; also remove a half-created container')
    .action(async (name: string, o, cmd: Command) => {
      const { destroyContainer } = await import('../../ops/destroy');
      await destroyContainer(rootOf(cmd), name, o.force === true);
      print(`destroyed ${name}\n`);
    });
}
