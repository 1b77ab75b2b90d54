import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('start')
    .description('start a container; returns once its init runs')
    .argument('<name>', 'container name')
    .option('--force', 'start a source a migration left stopped (--keep-source) although its copy runs on the other host')
    .action(async (name: string, o: { force?: boolean }, cmd: Command) => {
      const state = remoteOf(cmd)
        ? await onRemote(cmd, (client, api) => client.unary(api.Containers.Start, { name }))
        : await (await import('../../ops/start')).startContainer(openContainer(cmd, name), { force: o.force === true });
      print(`started ${name} (init pid ${state.initPid})\n`);
    });
}
