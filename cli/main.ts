import { Command, CommanderError } from 'commander';
import { describeError, TsvzError } from '../runtime/errors';

// One file per command; each only parses and calls into runtime/.
const COMMANDS = [
  'create', 'start', 'stop', 'kill', 'destroy', 'exec', 'console', 'info', 'list', 'logs', 'doctor', 'freeze', 'unfreeze', 'checkpoint', 'restore', 'pool', 'snapshot', 'clone',
] as const;

const ALIASES: Record<string, string> = { ls: 'list' };

/**
 * The command files to load: only the one being run (loading all of them
 * costs more than the work of `tsvz list`), or all for help and errors.
 */
export function commandsFor(argv: string[]): readonly string[] {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--root') { i++; continue; }
    if (a.startsWith('--root=') || a === '--debug') continue;
    const name = ALIASES[a] ?? a;
    return (COMMANDS as readonly string[]).includes(name) ? [name] : COMMANDS;
  }
  return COMMANDS;
}

function buildProgram(commands: readonly string[]): Command {
  const program = new Command('tsvz')
    .description('System containers whose whole state can be frozen, saved, restored and moved.')
    .option('--root <dir>', 'directory holding all state (env TSVZ_ROOT)', undefined)
    .option('--debug', 'print stack traces on errors')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`tsvz: ${text.replace(/^error: /, '').trim()}\n`) });
  program.addHelpText('after', '\nRun `tsvz COMMAND --help` for the options of a command.');
  for (const name of commands) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    (require(`./commands/${name}`) as { register(p: Command): void }).register(program);
  }
  for (const sub of program.commands) sub.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // `tsvz list | head`: a reader that went away is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err; });
  const program = buildProgram(commandsFor(argv));
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; real parse errors were already printed.
      return err.exitCode;
    }
    const debug = argv.includes('--debug');
    process.stderr.write(`tsvz: ${describeError(err)}\n`);
    if (debug && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return err instanceof TsvzError ? err.exitCode : 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => process.exit(code));
}
