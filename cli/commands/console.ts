import type { Command } from 'commander';
import { openContainer } from '../context';

export function register(program: Command): void {
  program
    .command('console')
    .description("attach to the container's console (detach with Ctrl-a q)")
    .argument('<name>', 'container name')
    .action(async (name: string, _o, cmd: Command) => {
      const { attachConsole } = await import('../../ops/console');
      await attachConsole(openContainer(cmd, name), process.stdin, process.stdout);
    });
}
