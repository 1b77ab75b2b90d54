import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('start')
    .description('start a container; returns once its init runs')
    .argument('<name>', 'container name')
    .action(async (name: string, _o, cmd: Command) => {
      const state = remoteOf(cmd)
        ? await onRemote(cmd, (client, api) => client.unary(api.Containers.Start, { name }))
        : await (await import('../../ops/start')).startContainer(openContainer(cmd, name));
      print(`started ${name} (init pid ${state.initPid})\n`);
    });
}
