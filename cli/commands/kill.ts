import type { Command } from 'commander';
import { openContainer } from '../context';

export function register(program: Command): void {
  program
    .command('kill')
    .description("send a signal to the container's init")
    .argument('<name>', 'container name')
    .argument('[signal]', 'signal name or number', 'SIGKILL')
    .action(async (name: string, signal: string, _o, cmd: Command) => {
      const { killContainer } = await import('../../ops/kill');
      await killContainer(openContainer(cmd, name), signal);
    });
}
