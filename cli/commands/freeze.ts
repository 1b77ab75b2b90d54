import type { Command } from 'commander';
import { openContainer } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('freeze')
    .description('freeze every process of a running container (cgroup freezer)')
    .argument('<name>', 'container name')
    .option('--v1', 'use the cgroup v1 freezer (freezer.state)')
    .option('--v2', 'use the cgroup v2 freezer (cgroup.freeze)')
    .action(async (name: string, o: { v1?: boolean; v2?: boolean }, cmd: Command) => {
      const { freezeContainer } = await import('../../ops/freeze');
      const { InvalidArgumentError } = await import('../../lib/errors');
      if (o.v1 && o.v2) throw new InvalidArgumentError('--v1 and --v2 exclude each other');
      const prefer = o.v1 ? 'v1' : o.v2 ? 'v2' : undefined;
      const { ms } = await freezeContainer(openContainer(cmd, name), { prefer });
      print(`frozen ${name} in ${ms.toFixed(1)} ms\n`);
    });
}
