import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print, printError } from '../output';
import { InvalidArgumentError, TsvzError } from '../../lib/errors';
import type { TransferProgress } from '../../migrate/progress';
import type { CheckResult, MigrationResult } from '../../migrate/source';
import type { RemoteClient } from '../../daemon/client';
import { onRemote, remoteOf } from '../remote';

function parseMode(mode: unknown): 'stop' | 'pre' | 'post' | 'auto' {
  if (mode === 'stop' || mode === 'pre' || mode === 'post' || mode === 'auto') return mode;
  throw new InvalidArgumentError(`unknown --mode ${JSON.stringify(String(mode).slice(0, 20))}`, 'stop, pre, post or auto');
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

/**
 * `tsvz --remote HOST migrate ...`: HOST's daemon drives the migration (to
 * one of its remotes); its phases and progress are drawn here as they
 * come, and cancelling the call (Ctrl-C) cancels it there.
 */
async function remoteRun(
  client: RemoteClient, api: typeof import('../../daemon/proto'), req: import('../../daemon/proto').MigrateRun,
  opts: { onPhase?: (p: string) => void; onProgress?: (p: TransferProgress) => void; signal: AbortSignal },
): Promise<MigrationResult | CheckResult> {
  const { parseRunResult } = await import('../../migrate/run-result');
  let id: string | undefined;
  try {
    for await (const ev of client.serverStream(api.Migration.Run, req, { signal: opts.signal })) {
      if (ev.migration !== undefined) id = ev.migration;
      else if (ev.phase !== undefined) opts.onPhase?.(ev.phase.slice(0, 200));
      else if (ev.progress) {
        const p = ev.progress;
        opts.onProgress?.({ what: p.what === 'files' || p.what === 'pages' ? p.what : 'memory', bytes: p.bytes ?? 0, total: p.total ?? 0, seconds: p.seconds ?? 0, bytesPerSec: p.bytesPerSec ?? 0, etaSec: p.etaSec, done: p.done === true });
      } else if (ev.resultJson !== undefined) {
        return parseRunResult(ev.resultJson, req.checkOnly === true, client.peer.name);
      }
    }
  } catch (err) {
    if (!opts.signal.aborted) throw err;
    // Cancelled here: the host rolls it back; wait until its journal says so (or the switch-over won).
    if (id) await rolledBack(client, api, id, opts.onPhase);
    throw opts.signal.reason;
  }
  throw new TsvzError('ECORRUPT', `${client.peer.name} ended the migration's call without its result`);
}

/** A remote's migration `id` followed (Status) until it is settled there, for up to two minutes. */
async function rolledBack(client: RemoteClient, api: typeof import('../../daemon/proto'), id: string, onPhase?: (p: string) => void): Promise<void> {
  const deadline = Date.now() + 120_000;
  onPhase?.(`waiting for ${client.peer.name} to roll it back`);
  while (Date.now() < deadline) {
    const s = await client.unary(api.Migration.Status, { id }, { timeoutMs: 10_000 }).catch(() => undefined);
    if (s?.phase === 'aborted') return;
    if (s?.phase === 'committed') throw new TsvzError('ESTATE', `the migration had passed the switch-over on ${client.peer.name}: it finished there`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new TsvzError('ETIMEDOUT', `${client.peer.name} did not roll the migration back within 120 s`, { hint: `\`tsvz migrate list\` on ${client.peer.name} shows where it is` });
}

export function register(program: Command): void {
  const migrate = program
    .command('migrate')
    .description("move a running container to another host's daemon (stop-and-copy, pre-copy or post-copy); list, cancel and settle migrations");

  migrate
    .command('run', { isDefault: true })
    .description('migrate a running container (the default: `tsvz migrate p1 --to host-b`)')
    .argument('<name>', 'container name')
    .requiredOption('--to <remote>', 'the target host (a remote, see `tsvz remote add`)')
    .option('--pool <pool>', "the target's pool for the files (default: its default pool)")
    .option('--mode <mode>', 'stop (stop-and-copy), pre (pre-copy: memory in rounds while it runs, then stop-and-copy of the rest; needs soft-dirty tracking), post (post-copy: runs there at once, memory follows; needs this host until the last page) or auto (pre-copy where this host tracks dirty memory, else stop-and-copy)', 'auto')
    .option('--keep-source', 'leave the source stopped with its checkpoint, marked as migrated (start and restore refuse it without --force), instead of destroying it')
    .option('--check', 'every check both hosts make before the freeze, and nothing else')
    .option('--json', 'machine-readable result')
    .action(async (name: string, o, cmd: Command) => {
      const { validateName } = await import('../../lib/names');
      validateName(name);
      const to = validateName(o.to, 'remote');
      const pool = o.pool === undefined ? undefined : validateName(o.pool, 'pool');
      const mode = parseMode(o.mode);
      const where = remoteOf(cmd);
      // Ctrl-C or `tsvz migrate cancel` (SIGTERM): rolled back until the switch-over, finished after it.
      const cancel = new AbortController();
      const onSignal = () => {
        printError(`migrate ${name}: cancelling\n`);
        cancel.abort(new TsvzError('ECANCELLED', `migration of ${name} to ${to} cancelled`, { hint: where ? `${where} rolls it back: ${name} runs on there` : `${name} runs on here` }));
      };
      process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
      const onPhase = o.json ? undefined : (p: string) => printError(`migrate ${name}: ${p}\n`);
      const onProgress = o.json ? undefined : await progressLine(name);
      try {
        const answer = where
          ? await onRemote(cmd, (client, api) => remoteRun(client, api, { name, to, mode, pool, keepSource: o.keepSource === true, checkOnly: o.check === true }, { onPhase, onProgress, signal: cancel.signal }))
          : o.check
            ? await (await import('../../migrate/drive')).driveCheck(rootOf(cmd), name, to, { pool, mode })
            : await (await import('../../migrate/drive')).driveMigration(rootOf(cmd), name, to, { keepSource: o.keepSource === true, pool, mode, signal: cancel.signal, onPhase, onProgress });
        if (o.json) return printJson(answer);
        const { formatBytes } = await import('../../lib/units');
        if (o.check) {
          const r = answer as CheckResult;
          return print(`${name} can migrate to ${to}: name free, pool, config, space (${formatBytes(r.filesBytes)} of files, sent ${r.filesFormat === 'tar' ? 'as a tar stream' : `by ${r.filesFormat} send`}), CRIU ${r.targetCriu ?? '?'} and ${where ? `${where}'s` : 'this'} CPU accepted there\n`);
        }
        const r = answer as MigrationResult;
        const lastPage = r.lastPageMs === undefined ? '' : `, last page after ${(r.lastPageMs / 1000).toFixed(1)} s`;
        const rounds = r.preCopyRounds?.length ? ` after ${r.preCopyRounds.length} round${r.preCopyRounds.length === 1 ? '' : 's'}` : '';
        print(`migrated ${name} to ${to}: frozen ${r.frozenMs.toFixed(0)} ms${lastPage}, total ${(r.totalMs / 1000).toFixed(1)} s (${formatBytes(r.imagesBytes)} checkpoint, ${formatBytes(r.filesBytes)} files${r.filesFormat === 'tar' ? '' : ` by ${r.filesFormat} send`}, ${r.mode}${rounds})\n`);
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
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
      const { isSettled, MigrationJournal } = await import('../../migrate/journal');
      const { formatBytes } = await import('../../lib/units');
      const journal = new MigrationJournal(rootOf(cmd));
      const all = journal.list().map((r) => ({ ...r, progress: r.role === 'source' && !isSettled(r) ? journal.progress(r.id) : undefined }));
      if (o.json) return printJson(all);
      const progress = (p: (typeof all)[number]['progress']) => (p
        ? `${p.what} ${p.total > 0 ? `${Math.min(100, Math.floor((p.bytes / p.total) * 100))}% ` : ''}${formatBytes(p.bytes)}${p.total > 0 ? ` of ${formatBytes(p.total)}` : ''} (${formatBytes(Math.round(p.bytesPerSec))}/s)`
        : '-');
      printTable([['ID', 'NAME', 'ROLE', 'PEER', 'PHASE', 'PROGRESS', 'UPDATED'], ...all.map((r) => [r.id.slice(0, 12), r.name, r.role, r.peer, r.phase, progress(r.progress), r.updatedAt])]);
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
