import { InvalidArgumentError } from './errors';

/** Words the CLI uses as subcommands: a container named like one would be ambiguous. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'create', 'start', 'stop', 'kill', 'destroy', 'exec', 'console', 'info', 'list', 'ls', 'logs', 'doctor',
  'help', 'checkpoint', 'restore', 'snapshot', 'clone', 'pool', 'migrate', 'daemon', 'schedule',
  'freeze', 'unfreeze', 'rm', 'inspect', 'export', 'import', 'rollback', 'version', 'prune', 'backup', 'protect', 'unprotect', 'run', 'resolve',
]);

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const MAX_NAME_LENGTH = 64;

/**
 * Validate a container (or snapshot) name. Names become directory names,
 * cgroup names and hostnames, so only a conservative alphabet is allowed.
 */
export function validateName(name: string, what = 'container'): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`${what} name is empty`);
  if (name.length > MAX_NAME_LENGTH) {
    throw new InvalidArgumentError(`${what} name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (name.startsWith('-')) throw new InvalidArgumentError(`${what} name "${printable(name)}" starts with "-"`);
  if (name === '.') throw new InvalidArgumentError(`${what} name "." is not a name`, 'use letters, digits, ".", "_" and "-", starting with a letter or digit');
  if (name.includes('..')) throw new InvalidArgumentError(`${what} name "${printable(name)}" contains ".."`);
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgumentError(
      `${what} name "${printable(name)}" is invalid`,
      'use letters, digits, ".", "_" and "-", starting with a letter or digit',
    );
  }
  if (RESERVED_NAMES.has(name)) {
    throw new InvalidArgumentError(`${what} name "${name}" is a tsvz subcommand`, 'pick another name');
  }
  return name;
}

/** Show control characters visibly so an error message stays one line. */
function printable(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}
