import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('start')
    .description('start a container; returns once its init runs')
    .argument('<name>', 'container name')
    .action(async (name: string, _o, cmd: Command) => {
      const { startContainer } = await import('../../ops/start');
      const state = await startContainer(openContainer(cmd, name));
      print(`started ${name} (init pid ${state.initPid})\n`);
    });
}
