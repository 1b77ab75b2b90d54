import type { Command } from 'commander';
import { openContainer, rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('restore')
    .description('continue a container from a checkpoint (the newest when no id is given)')
    .argument('<name>', 'container name')
    .argument('[id]', 'checkpoint id')
    .option('--import <file>', 'restore from an archive made by `tsvz checkpoint export` (creates the container from its template if missing)')
    .option('--privileged', "with --import: accept an archive of a privileged container (its processes run as this host's root)")
    .action(async (name: string, id: string | undefined, o, cmd: Command) => {
      if (o.import !== undefined) {
        const { InvalidArgumentError } = await import('../../lib/errors');
        if (id !== undefined) throw new InvalidArgumentError('--import takes no checkpoint id', 'the archive holds one checkpoint');
        const { restoreImported } = await import('../../ops/import');
        const { state, imported } = await restoreImported(rootOf(cmd), name, o.import, { privileged: o.privileged === true });
        print(`restored ${name} from ${imported.meta.container}'s checkpoint ${imported.meta.id} (init pid ${state.initPid})\n`);
        return;
      }
      if (o.privileged) {
        const { InvalidArgumentError } = await import('../../lib/errors');
        throw new InvalidArgumentError('--privileged goes with --import');
      }
      const { restoreContainer } = await import('../../ops/restore');
      const state = await restoreContainer(openContainer(cmd, name), id);
      print(`restored ${name} (init pid ${state.initPid})\n`);
    });
}
