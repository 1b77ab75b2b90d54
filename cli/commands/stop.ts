import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('stop')
    .description("clean shutdown: the stop signal to init, SIGKILL after the timeout")
    .argument('<name>', 'container name')
    .option('-t, --timeout <seconds>', 'seconds to wait before SIGKILL', '10')
    .action(async (name: string, o, cmd: Command) => {
      const { InvalidArgumentError } = await import('../../lib/errors');
      const timeout = Number(o.timeout);
      if (!/^\d+(\.\d+)?$/.test(o.timeout)) throw new InvalidArgumentError(`invalid --timeout "${o.timeout}"`);
      if (remoteOf(cmd)) await onRemote(cmd, (client, api) => client.unary(api.Containers.Stop, { name, timeoutSeconds: timeout }));
      else await (await import('../../ops/stop')).stopContainer(openContainer(cmd, name), timeout);
      print(`stopped ${name}\n`);
    });
}
