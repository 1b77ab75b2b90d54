/**
 * The CLI's command words, and which command an argv runs. Kept apart from
 * main.ts so bin/tsvz can pick a command's code cache before loading the CLI.
 */
export const COMMANDS = [
  'create', 'start', 'stop', 'kill', 'destroy', 'exec', 'console', 'info', 'list', 'logs', 'doctor', 'freeze', 'unfreeze', 'checkpoint', 'restore', 'pool', 'snapshot', 'clone',
] as const;

export type CommandName = (typeof COMMANDS)[number];

const ALIASES: Record<string, CommandName> = { ls: 'list' };

function isCommand(word: string): word is CommandName {
  return (COMMANDS as readonly string[]).includes(word);
}

/** The command argv runs, skipping global options; undefined for help, errors and unknown words. */
export function commandOf(argv: string[]): CommandName | undefined {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--root') { i++; continue; }
    if (a.startsWith('--root=') || a === '--debug') continue;
    const name = ALIASES[a] ?? a;
    return isCommand(name) ? name : undefined;
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
