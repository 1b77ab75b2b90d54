/**
 * The CLI's command words, and which command an argv runs. Kept apart from
 * main.ts so bin/tsvz can pick a command's code cache before loading the CLI.
 */
export const COMMANDS = [
  'create', 'start', 'stop', 'kill', 'destroy', 'exec', 'console', 'info', 'list', 'logs', 'doctor', 'freeze', 'unfreeze', 'checkpoint', 'restore', 'pool', 'snapshot', 'clone',
  'daemon', 'trust', 'remote', 'migrate', 'schedule', 'prune', 'backup',
] as const;

export type CommandName = (typeof COMMANDS)[number];

const ALIASES: Record<string, CommandName> = { ls: 'list' };

function isCommand(word: string): word is CommandName {
  return (COMMANDS as readonly string[]).includes(word);
}

/** The command argv runs, skipping global options; undefined for help, errors and unknown words. */
export function commandOf(argv: string[]): CommandName | undefined {
  return locate(argv)?.name;
}

/** Commands with subcommands: their names, the default first (`tsvz checkpoint p1` creates one). */
const SUBCOMMANDS: Partial<Record<CommandName, readonly string[]>> = {
  checkpoint: ['create', 'list', 'inspect', 'export', 'rm'],
  snapshot: ['create', 'list', 'rollback', 'rm', 'protect', 'unprotect'],
  pool: ['create', 'list', 'info', 'rm'],
  daemon: ['run', 'unit'],
  trust: ['token', 'list', 'rm'],
  remote: ['add', 'list', 'rm', 'info'],
  migrate: ['run', 'list', 'cancel', 'resolve'],
  schedule: ['list', 'add', 'run', 'rm'],
  backup: ['list', 'restore'],
};

/** What `--remote HOST` runs on another host's daemon (cli/remote.ts); every other command refuses it. */
export const REMOTE_COMMANDS: ReadonlySet<string> = new Set([
  'list', 'info', 'start', 'stop', 'logs', 'checkpoint-create', 'snapshot-create', 'restore', 'migrate-run',
]);

/**
 * What argv runs, as "command" or "command-subcommand" (checkpoint-create,
 * snapshot-list): each has its own code cache, so a dump does not load the
 * code of export and inspect too; run on another host (`--remote`), it is
 * "list@remote" (the gRPC client's code, not the local verb's). Undefined
 * where commandOf is.
 */
export function runKeyOf(argv: string[]): string | undefined {
  const found = locate(argv);
  if (!found) return undefined;
  const subs = SUBCOMMANDS[found.name];
  const next = argv[found.index + 1];
  const key = subs ? `${found.name}-${next !== undefined && subs.includes(next) ? next : subs[0]}` : found.name;
  return found.remote ? `${key}@remote` : key;
}

/**
 * Does argv run from the bundle with the gRPC and X.509 libraries
 * (scripts/bundle.js)? The daemon, `trust`, `remote`, `migrate`, `schedule`
 * (a run ships), `backup` (--on, --from), and anything with --remote;
 * everything else runs from the smaller one.
 */
const REMOTE_BUNDLE: ReadonlySet<string> = new Set(['daemon', 'trust', 'remote', 'migrate', 'schedule', 'backup']);

export function usesRemoteBundle(argv: string[]): boolean {
  const found = locate(argv);
  return found !== undefined && (found.remote || REMOTE_BUNDLE.has(found.name));
}

/** The runKeyOf of a parsed command (commander's names, without argv). */
export function runKeyOfCommand(name: string, sub: string | undefined): string {
  return SUBCOMMANDS[name as CommandName] && sub ? `${name}-${sub}` : name;
}

function locate(argv: string[]): { name: CommandName; index: number; remote: boolean } | undefined {
  let remote = false;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root') { i++; continue; }
    if (a === '--remote') { remote = true; i++; continue; }
    if (a.startsWith('--remote=')) { remote = true; continue; }
    if (a.startsWith('--root=') || a === '--debug') continue;
    const name = ALIASES[a] ?? a;
    return isCommand(name) ? { name, index: i, remote } : undefined;
  }
  return undefined;
}

/**
 * The command files to load: only the one being run (loading all of them
 * costs more than the work of `tsvz list`), or all for help and errors.
 */
export function commandsFor(argv: string[]): readonly CommandName[] {
  const name = commandOf(argv);
  return name ? [name] : COMMANDS;
}
