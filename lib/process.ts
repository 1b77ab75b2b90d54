import { spawnSync } from 'node:child_process';
import fs = require('node:fs');
import path = require('node:path');
import { CommandError, NotSupportedError, SystemError } from './errors';

/**
 * Run host tools (ip, nsenter, btrfs, ...) synchronously. A non-zero exit
 * throws CommandError (whose message ends with the tool's last stderr line)
 * unless `allowFail` is set; a tool that is not installed throws
 * NotSupportedError.
 */

export interface RunOptions {
  /** Written to the command's stdin (e.g. for `ip -batch -`). */
  input?: string;
  /** Return the result on a non-zero exit instead of throwing. */
  allowFail?: boolean;
}

export interface RunResult {
  /** Exit status, or null when the command was killed by a signal. */
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Host tools live in sbin, which is not always on PATH (non-login shells, CI runners). */
const FALLBACK_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const MAX_OUTPUT = 64 * 1024 * 1024;

const resolved = new Map<string, string>();

/** Absolute path of an executable, looked up on PATH then the sbin/bin dirs; undefined if missing. */
export function findCommand(cmd: string): string | undefined {
  if (cmd.includes('/')) return isExecutableFile(cmd) ? cmd : undefined;
  const cached = resolved.get(cmd);
  if (cached) return cached;
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...FALLBACK_PATH];
  const found = dirs.map((dir) => path.join(dir, cmd)).find(isExecutableFile);
  if (found) resolved.set(cmd, found);
  return found;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): RunResult {
  const file = findCommand(cmd);
  if (!file) throw new NotSupportedError(`${cmd}: command not found`, `install ${cmd} or add it to PATH`);
  const r = spawnSync(file, args, { input: opts.input, encoding: 'utf8', maxBuffer: MAX_OUTPUT });
  if (r.error) throw new SystemError(`cannot run ${commandLine(cmd, args)}: ${r.error.message}`, r.error);
  const result: RunResult = { status: r.status, stdout: r.stdout, stderr: r.stderr };
  if (r.status !== 0 && !opts.allowFail) {
    const stderr = r.signal ? `${r.stderr}\nkilled by ${r.signal}` : r.stderr;
    throw new CommandError(commandLine(cmd, args), r.status, stderr);
  }
  return result;
}

/** The command as a user would type it (for error messages). */
export function commandLine(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (a === '' || /[\s"'\\$`]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

function isExecutableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}
