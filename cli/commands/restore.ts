import type { Command } from 'commander';
import { openContainer, rootOf } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('restore')
    .description('continue a container from a checkpoint (the newest when no id is given)')
    .argument('<name>', 'container name')
    .argument('[id]', 'checkpoint id')
    .option('--import <file>', 'restore from an archive made by `tsvz checkpoint export` (creates the container from its template if missing)')
    .option('--trust-unsigned', 'with --import: accept an archive no trusted host signed (it is checked as strictly otherwise)')
    .option('--privileged', "with --import: accept an archive of a privileged container (its processes run as this host's root)")
    .option('--force', 'restore a source a migration left stopped (--keep-source) although its copy runs on the other host')
    .action(async (name: string, id: string | undefined, o, cmd: Command) => {
      if (o.import !== undefined) {
        const { InvalidArgumentError } = await import('../../lib/errors');
        if (id !== undefined) throw new InvalidArgumentError('--import takes no checkpoint id', 'the archive holds one checkpoint');
        if (remoteOf(cmd)) {
          const r = await onRemote(cmd, async (client, api) => client.clientStream(api.Containers.RestoreImport, await uploadOf(name, o.import)));
          print(`restored ${name} from ${r.sourceContainer}'s checkpoint ${r.checkpoint} (init pid ${r.initPid})\n`);
          return;
        }
        const { restoreImported } = await import('../../ops/import');
        const { archiveTrust } = await import('../../daemon/signers');
        const { printError } = await import('../output');
        const root = rootOf(cmd);
        const { state, imported } = await restoreImported(root, name, o.import, { trust: archiveTrust(root, o.trustUnsigned === true), privileged: o.privileged === true });
        if (!imported.signer) printError(`tsvz: warning: ${o.import} is not signed; accepted because of --trust-unsigned\n`);
        if (imported.otherKernel) printError(`tsvz: note: the checkpoint was dumped on kernel ${imported.otherKernel}\n`);
        print(`restored ${name} from ${imported.meta.container}'s checkpoint ${imported.meta.id}${imported.signer ? ` (signed by ${imported.signer})` : ''} (init pid ${state.initPid})\n`);
        return;
      }
      if (o.privileged) {
        const { InvalidArgumentError } = await import('../../lib/errors');
        throw new InvalidArgumentError('--privileged goes with --import');
      }
      if (remoteOf(cmd)) {
        const { InvalidArgumentError } = await import('../../lib/errors');
        throw new InvalidArgumentError('on a remote host, restore takes --import FILE', 'a checkpoint on that host is restored there: `tsvz --remote HOST restore` is not supported yet');
      }
      const { restoreContainer } = await import('../../ops/restore');
      const state = await restoreContainer(openContainer(cmd, name), id, { force: o.force === true });
      print(`restored ${name} (init pid ${state.initPid})\n`);
    });
}

/** The archive as an upload: its header, then chunks of at most 1 MiB read as they are sent. */
async function uploadOf(name: string, file: string): Promise<AsyncIterable<import('../../daemon/proto').ImportMessage>> {
  const fs = await import('node:fs');
  const { MAX_CHUNK } = await import('../../daemon/limits');
  const { SystemError } = await import('../../lib/errors');
  let size: number;
  try { size = fs.statSync(file).size; } catch (err) { throw new SystemError(`cannot read ${file}`, err); }
  return (async function* () {
    yield { header: { name, sizeBytes: size } };
    for await (const data of fs.createReadStream(file, { highWaterMark: MAX_CHUNK })) yield { chunk: { data: data as Buffer } };
  })();
}
