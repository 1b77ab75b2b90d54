import { Command, CommanderError } from 'commander';
import { codeOf, describeError, TsvzError } from '../lib/errors';
import { CommandName, commandsFor, REMOTE_COMMANDS, runKeyOfCommand } from './command-names';
import { print, printError } from './output';
import { trace } from '../lib/trace';

// One file per command; each only parses and calls into runtime/. Listed
// one by one (not `require(\`./commands/${name}\`)`) so the bundler sees them.
type CommandModule = { register(p: Command): void };
const LOADERS: Record<CommandName, () => CommandModule> = {
  create: () => require('./commands/create'),
  start: () => require('./commands/start'),
  stop: () => require('./commands/stop'),
  kill: () => require('./commands/kill'),
  destroy: () => require('./commands/destroy'),
  exec: () => require('./commands/exec'),
  console: () => require('./commands/console'),
  info: () => require('./commands/info'),
  list: () => require('./commands/list'),
  logs: () => require('./commands/logs'),
  doctor: () => require('./commands/doctor'),
  freeze: () => require('./commands/freeze'),
  unfreeze: () => require('./commands/unfreeze'),
  checkpoint: () => require('./commands/checkpoint'),
  restore: () => require('./commands/restore'),
  pool: () => require('./commands/pool'),
  snapshot: () => require('./commands/snapshot'),
  clone: () => require('./commands/clone'),
  daemon: () => require('./commands/daemon'),
  trust: () => require('./commands/trust'),
  remote: () => require('./commands/remote'),
  migrate: () => require('./commands/migrate'),
  schedule: () => require('./commands/schedule'),
  prune: () => require('./commands/prune'),
  backup: () => require('./commands/backup'),
};

/**
 * `tsvz --version`: the version and commit scripts/bundle.js wrote to
 * dist/cli/build-info.json (bundled with the CLI, so the release artifact
 * carries it), and the Node this runs on.
 */
function versionLine(): string {
  let info: { version?: string; commit?: string } = {};
  try {
    info = require('./build-info.json') as typeof info;
  } catch {
    // tsc alone (no scripts/build) writes no build-info.json.
  }
  return `tsvz ${info.version ?? 'unknown'} (commit ${info.commit ?? 'unknown'}, node ${process.version})`;
}

function buildProgram(commands: readonly CommandName[]): Command {
  const program = new Command('tsvz')
    .description('System containers whose whole state can be frozen, saved, restored and moved.')
    .version(versionLine(), '-V, --version', 'print the version, commit and Node')
    .option('--root <dir>', 'directory holding all state (env TSVZ_ROOT)', undefined)
    .option('--remote <host>', 'run the command on another host\'s daemon (see `tsvz remote`)')
    .option('--debug', 'print stack traces on errors')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: print,
      writeErr: printError,
      outputError: (text, write) => write(`tsvz: ${text.replace(/^error: /, '').trim()}\n`),
    });
  program.addHelpText('after', '\nRun `tsvz COMMAND --help` for the options of a command.');
  for (const name of commands) {
    LOADERS[name]().register(program);
  }
  for (const sub of program.commands) sub.exitOverride();
  program.hook('preAction', (_program, action) => {
    if ((program.opts() as { remote?: string }).remote === undefined) return;
    const parent = action.parent && action.parent !== program ? action.parent : undefined;
    const key = parent ? runKeyOfCommand(parent.name(), action.name()) : action.name();
    if (!REMOTE_COMMANDS.has(key)) {
      const { InvalidArgumentError } = require('../lib/errors') as typeof import('../lib/errors');
      throw new InvalidArgumentError(`\`tsvz ${parent ? `${parent.name()} ${action.name()}` : action.name()}\` does not run on a remote host`, `--remote works with: ${[...REMOTE_COMMANDS].map((k) => k.replace('-', ' ')).join(', ')}`);
    }
  });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  trace('main');
  const program = buildProgram(commandsFor(argv));
  try {
    await program.parseAsync(argv);
    trace('done');
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; real parse errors were already printed.
      return err.exitCode;
    }
    const debug = argv.includes('--debug');
    printError(`tsvz: ${describeError(err)}\n`);
    if (debug) printError(`code: ${codeOf(err)}\n${err instanceof Error ? err.stack : ''}\n`);
    return err instanceof TsvzError ? err.exitCode : 1;
  }
}

if (require.main === module) {
  void main(process.argv).then((code) => process.exit(code));
}
