import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('unfreeze')
    .description('thaw a frozen container')
    .argument('<name>', 'container name')
    .action(async (name: string, _o, cmd: Command) => {
      const { unfreezeContainer } = await import('../../ops/freeze');
      await unfreezeContainer(openContainer(cmd, name));
      print(`unfrozen ${name}\n`);
    });
}
