import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print, printError } from '../output';
import { InvalidArgumentError, TsvzError } from '../../lib/errors';
import type { TransferProgress } from '../../migrate/progress';

function parseMode(mode: unknown): 'stop' | 'post' | 'auto' {
  if (mode === 'stop' || mode === 'post' || mode === 'auto') return mode;
  throw new InvalidArgumentError(`unknown --mode ${JSON.stringify(String(mode).slice(0, 20))}`, 'stop, post or auto');
}

/** A transfer's progress on stderr: redrawn in place on a terminal, its summary once it ends. */
async function progressLine(name: string): Promise<(p: TransferProgress) => void> {
  const { formatBytes } = await import('../../lib/units');
  const tty = process.stderr.isTTY === true;
  return (p) => {
    const rate = `${formatBytes(Math.round(p.bytesPerSec))}/s`;
    if (p.done) {
      printError(`${tty ? '\r\x1b[K' : ''}migrate ${name}: ${p.what} ${formatBytes(p.bytes)} in ${p.seconds.toFixed(1)} s (${rate})\n`);
    } else if (tty) {
      const share = Math.min(1, p.total > 0 ? p.bytes / p.total : 0);
      const bar = '#'.repeat(Math.round(share * 30)).padEnd(30, '.');
      const eta = p.etaSec === undefined ? '' : `  ETA ${Math.ceil(p.etaSec)} s`;
      printError(`\r\x1b[Kmigrate ${name}: ${p.what.padEnd(6)} [${bar}] ${(share * 100).toFixed(0).padStart(3)}%  ${formatBytes(p.bytes)} of ${formatBytes(p.total)}  ${rate}${eta}`);
    }
  };
}

export function register(program: Command): void {
  const migrate = program
    .command('migrate')
    .description("move a running container to another host's daemon (stop-and-copy or post-copy); list, cancel and settle migrations");

  migrate
    .command('run', { isDefault: true })
    .description('migrate a running container (the default: `tsvz migrate p1 --to host-b`)')
    .argument('<name>', 'container name')
    .requiredOption('--to <remote>', 'the target host (a remote, see `tsvz remote add`)')
    .option('--pool <pool>', "the target's pool for the files (default: its default pool)")
    .option('--mode <mode>', 'stop (stop-and-copy), post (post-copy: runs there at once, memory follows; needs this host until the last page) or auto (stop-and-copy here)', 'auto')
    .option('--keep-source', 'leave the source stopped with its checkpoint, marked as migrated (start and restore refuse it without --force), instead of destroying it')
    .option('--check', 'every check both hosts make before the freeze, and nothing else')
    .option('--json', 'machine-readable result')
    .action(async (name: string, o, cmd: Command) => {
      const { validateName } = await import('../../lib/names');
      validateName(name);
      const to = validateName(o.to, 'remote');
      const { RemoteClient } = await import('../../daemon/client');
      const { hostSigner } = await import('../../daemon/signers');
      const { grpcTargetLink } = await import('../../migrate/link');
      const { checkMigration, migrateContainer } = await import('../../migrate/source');
      const root = rootOf(cmd);
      const pool = o.pool === undefined ? undefined : validateName(o.pool, 'pool');
      const mode = parseMode(o.mode);
      const client = await RemoteClient.connect(root, to);
      // Ctrl-C or `tsvz migrate cancel` (SIGTERM): rolled back until the switch-over, finished after it.
      const cancel = new AbortController();
      const onSignal = () => {
        printError(`migrate ${name}: cancelling\n`);
        cancel.abort(new TsvzError('ECANCELLED', `migration of ${name} to ${to} cancelled`, { hint: `${name} runs on here` }));
      };
      process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
      try {
        if (o.check) {
          const r = await checkMigration(root, name, grpcTargetLink(client), { pool, mode });
          if (o.json) return printJson(r);
          const { formatBytes } = await import('../../lib/units');
          return print(`${name} can migrate to ${to}: name free, pool, config, space (${formatBytes(r.filesBytes)} of files, sent ${r.filesFormat === 'tar' ? 'as a tar stream' : `by ${r.filesFormat} send`}), CRIU ${r.targetCriu ?? '?'} and this CPU accepted there\n`);
        }
        const r = await migrateContainer(root, name, grpcTargetLink(client), {
          keepSource: o.keepSource === true,
          pool,
          mode,
          signer: await hostSigner(root),
          onPhase: o.json ? undefined : (p) => printError(`migrate ${name}: ${p}\n`),
          signal: cancel.signal,
          onProgress: o.json ? undefined : await progressLine(name),
        });
        if (o.json) return printJson(r);
        const { formatBytes } = await import('../../lib/units');
        const lastPage = r.lastPageMs === undefined ? '' : `, last page after ${(r.lastPageMs / 1000).toFixed(1)} s`;
        print(`migrated ${name} to ${to}: frozen ${r.frozenMs.toFixed(0)} ms${lastPage}, total ${(r.totalMs / 1000).toFixed(1)} s (${formatBytes(r.imagesBytes)} checkpoint, ${formatBytes(r.filesBytes)} files${r.filesFormat === 'tar' ? '' : ` by ${r.filesFormat} send`}, ${r.mode})\n`);
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
        client.close();
      }
    });

  migrate
    .command('cancel')
    .description("stop this host's migration of NAME before the switch-over: it runs on here, the target drops its copy")
    .argument('<name>', 'container name')
    .action(async (name: string, _o, cmd: Command) => {
      const { validateName } = await import('../../lib/names');
      const { cancelMigration } = await import('../../migrate/cancel');
      print(`${await cancelMigration(rootOf(cmd), validateName(name))}\n`);
    });

  migrate
    .command('list')
    .description('migrations this host took part in, newest first')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { MigrationJournal } = await import('../../migrate/journal');
      const all = new MigrationJournal(rootOf(cmd)).list();
      if (o.json) return printJson(all);
      printTable([['ID', 'NAME', 'ROLE', 'PEER', 'PHASE', 'UPDATED'], ...all.map((r) => [r.id.slice(0, 12), r.name, r.role, r.peer, r.phase, r.updatedAt])]);
    });

  migrate
    .command('resolve')
    .description("settle a migration of NAME that was cut off: asks the other host's daemon, or takes --commit/--abort")
    .argument('<name>', 'container name')
    .option('--commit', 'on the target: the source is known gone, run the copy here')
    .option('--abort', 'on the target: the source runs on, remove the copy here')
    .action(async (name: string, o, cmd: Command) => {
      const { validateName } = await import('../../lib/names');
      const { resolveMigration } = await import('../../migrate/resolve');
      const outcome = await resolveMigration(rootOf(cmd), validateName(name), o.commit ? 'commit' : o.abort ? 'abort' : undefined);
      print(`${outcome}\n`);
    });
}
