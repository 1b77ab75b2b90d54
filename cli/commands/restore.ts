import type { Command } from 'commander';
import { rootOf } from '../context';

export function register(program: Command): void {
  program
    .command('restore')
    .description('continue a container from a checkpoint (the newest when no id is given)')
    .argument('<name>', 'container name')
    .argument('[id]', 'checkpoint id')
    .action(async (name: string, id: string | undefined, _o, cmd: Command) => {
      const { Container } = await import('../../runtime/container');
      const { restoreContainer } = await import('../../checkpoint/restore');
      const state = await restoreContainer(Container.open(rootOf(cmd), name), id);
      process.stdout.write(`restored ${name} (init pid ${state.initPid})\n`);
    });
}
