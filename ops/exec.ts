import type { StdioOptions } from 'node:child_process';
import fs = require('node:fs');
import os = require('node:os');
import { droppedCapabilities } from '../runtime/capabilities';
import { isPrivileged } from '../runtime/config';
import { seccompSpec } from '../runtime/seccomp';
import { isFrozen } from '../runtime/cgroups/freezer';
import { Container } from '../runtime/container';
import { InvalidArgumentError, InvalidStateError, LaunchError } from '../lib/errors';
import { nativeBinary } from '../runtime/paths';
import { isSameProcess } from '../lib/proc';
import { mergeEnv } from '../lib/env';

export interface ExecOptions {
  tty?: boolean;
  env?: string[];
  cwd?: string;
  /** Where the command's stdin, stdout and stderr go (default: this process's). */
  stdio?: StdioOptions;
}

/**
 * Run a command inside a running container through native tsvz-exec (setns
 * into a mount namespace needs a single-threaded process). Returns the
 * command's exit status (128+signal when killed). Takes no lock: a long
 * interactive exec must not block `stop`.
 */
export async function execInContainer(c: Container, argv: string[], opts: ExecOptions = {}): Promise<number> {
  if (argv.length === 0) throw new InvalidArgumentError('no command given', 'tsvz exec NAME -- COMMAND [ARGS...]');
  const state = c.state();
  if (state.status !== 'running' || !isSameProcess(state.initPid, state.initStartTime)) {
    throw new InvalidStateError(`container ${c.name} is not running`, `start it with \`tsvz start ${c.name}\``);
  }
  if (isFrozen(c.cgroups())) throw new InvalidStateError(`container ${c.name} is frozen`, `thaw it with \`tsvz unfreeze ${c.name}\``);
  const bin = nativeBinary('tsvz-exec');
  if (!fs.existsSync(bin)) throw new LaunchError(`${bin} is missing`, 'run `npm install` to build native/');
  const env = mergeEnv(c.config.env, [...(opts.tty && process.env.TERM ? [`TERM=${process.env.TERM}`] : []), ...(opts.env ?? [])]);
  const args = ['--pid', String(state.initPid)];
  if (!isPrivileged(c.config)) args.push('--userns');
  for (const f of c.cgroups().procsFiles()) args.push('--cgroup', f);
  for (const e of env) args.push('--env', e);
  for (const cap of droppedCapabilities(isPrivileged(c.config))) args.push('--cap-drop', String(cap));
  args.push('--seccomp', seccompSpec(c.config.allowSyscalls));
  if (opts.cwd) args.push('--cwd', opts.cwd);
  if (opts.tty) args.push('--tty');
  args.push('--', ...argv);
  const { spawn } = await import('node:child_process');
  const child = spawn(bin, args, { stdio: opts.stdio ?? 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(new LaunchError(`cannot run ${bin}: ${err.message}`)));
    // Killed by a signal itself: the shell's convention, 128 + its number.
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}
