import type { ChildProcess } from 'node:child_process';
import fs = require('node:fs');
import path = require('node:path');
import { PassThrough, Readable } from 'node:stream';
import { CommandError, NotSupportedError, SystemError, TimeoutError } from './errors';

/**
 * The one way tsvz runs host tools (ip, btrfs, zfs, cp, umount, ...): without
 * blocking the event loop, so a daemon serving many operations never stalls
 * on one of them. A non-zero exit throws CommandError (its message ends with
 * the tool's last stderr line) unless `allowFail`; a tool that is not
 * installed throws NotSupportedError; one that outlives `timeoutMs` is killed
 * and throws TimeoutError (a hung zfs-fuse gives an error, not a hung tsvz).
 */

export interface RunOptions {
  /** Written to the tool's stdin: text (`ip -batch -`) or a stream (`zfs recv`). */
  input?: string | Buffer | Readable;
  /** Return the result on a non-zero exit instead of throwing. */
  allowFail?: boolean;
  /** Kill the tool (SIGKILL) after this long. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Kill the tool when this process dies (SIGKILL through the kernel's
   * parent-death signal): long copies and sends must not run on, outside
   * any lock, after their operation was killed.
   */
  dieWithParent?: boolean;
}

export interface RunResult {
  /** Exit status, or null when the tool was killed by a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Host tools live in sbin, which is not always on PATH (non-login shells, CI runners). */
const FALLBACK_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const MAX_STDOUT = 64 * 1024 * 1024;
const MAX_STDERR = 64 * 1024;

const resolved = new Map<string, string>();

/**
 * The system's tool directories. What runs as a container's root (CRIU's tar
 * and ip run so) may not search the caller's own PATH entries.
 */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `env` with PATH set to the system's directories. */
export function withSystemPath(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, PATH: SYSTEM_PATH };
}

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

/** The command as a user would type it (for error messages). */
export function commandLine(cmd: string, args: string[]): string {
  return [cmd, ...args].map((a) => (a === '' || /[\s"'\\$`]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

function resolveTool(cmd: string): string {
  const file = findCommand(cmd);
  if (!file) throw new NotSupportedError(`${cmd}: command not found`, `install ${cmd} (scripts/setup-host)`);
  return file;
}

// Loaded on first use: commands that run no tool (list, info) never load child_process.
function childProcess(): typeof import('node:child_process') {
  return require('node:child_process') as typeof import('node:child_process');
}

/** Run a tool to its end and collect its output. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  let file: string;
  try {
    file = resolveTool(cmd);
  } catch (err) {
    if (opts.input instanceof Readable) opts.input.destroy();
    return Promise.reject(err);
  }
  const line = commandLine(cmd, args);
  [file, args] = opts.dieWithParent ? withParentDeathSignal(file, args) : [file, args];
  return new Promise((resolve, reject) => {
    const streamed = opts.input instanceof Readable ? opts.input : undefined;
    const child = childProcess().spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env,
      cwd: opts.cwd,
    });
    const stdout = collect(child.stdout!, MAX_STDOUT, 'head');
    const stderr = collect(child.stderr!, MAX_STDERR, 'tail');
    let inputError: Error | undefined;
    let timedOut = false;
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      kill(child);
    }, opts.timeoutMs);
    if (child.stdin) {
      const stdin = child.stdin;
      stdin.on('error', () => { /* EPIPE: the tool exited early; its status says why */ });
      if (streamed) {
        streamed.on('error', (err) => {
          inputError ??= err;
          // Close the pipe as well as killing: with zfs-fuse the daemon reads it, and must see EOF to abort.
          stdin.destroy();
          kill(child);
        });
        streamed.pipe(stdin);
      } else {
        stdin.end(opts.input as string | Buffer);
      }
    }
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(new SystemError(`cannot run ${line}: ${err.message}`, err));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (inputError) return reject(inputError);
      if (timedOut) return reject(new TimeoutError(`${line} did not finish within ${Math.round((opts.timeoutMs ?? 0) / 1000)} s`));
      const result: RunResult = { status: code, signal, stdout: stdout(), stderr: stderr() };
      if (code !== 0 && !opts.allowFail) {
        if (streamed && child.stdin) streamed.unpipe(child.stdin);
        streamed?.destroy(); // stop the sender
        return reject(failure(line, code, signal, result.stderr));
      }
      resolve(result);
    });
  });
}

/** Did the tool exit 0? (probes: "does this dataset exist") */
export async function succeeds(cmd: string, args: string[], timeoutMs?: number): Promise<boolean> {
  return (await run(cmd, args, { allowFail: true, timeoutMs })).status === 0;
}

/**
 * A tool's stdout as a stream (`btrfs send`, `zfs send`). A non-zero exit
 * destroys the stream with a CommandError; `onClose` runs once the tool has
 * exited (to unmount or drop what it was reading). Destroying the stream
 * kills the tool.
 */
export function runOutput(cmd: string, args: string[], opts: { onClose?: () => void | Promise<void>; dieWithParent?: boolean } = {}): Readable {
  const out = new PassThrough();
  const line = commandLine(cmd, args);
  const [file, argv] = opts.dieWithParent ? withParentDeathSignal(resolveTool(cmd), args) : [resolveTool(cmd), args];
  const child = childProcess().spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = collect(child.stderr, MAX_STDERR, 'tail');
  child.stdout.pipe(out, { end: false });
  let done = false;
  const finish = async (err?: Error) => {
    if (done) return;
    done = true;
    try {
      await opts.onClose?.();
    } catch (cleanupErr) {
      err ??= cleanupErr as Error;
    }
    if (err) out.destroy(err);
    else out.end();
  };
  child.on('error', (err) => void finish(new SystemError(`cannot run ${line}: ${err.message}`, err)));
  child.on('close', (code, signal) => void finish(code === 0 ? undefined : failure(line, code, signal, stderr())));
  out.on('close', () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Close our end of the pipe too: with zfs-fuse the daemon, not the killed
    // `zfs send`, writes into it, and would block for ever holding the dataset.
    child.stdout.destroy();
    kill(child);
  });
  return out;
}

/**
 * `setpriv --pdeathsig KILL -- FILE ARGS` (util-linux): it sets the signal
 * and execs the tool in place, so the tool itself dies with this process.
 * Without setpriv the tool runs as it is.
 */
function withParentDeathSignal(file: string, args: string[]): [string, string[]] {
  const setpriv = findCommand('setpriv');
  return setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, args];
}

function kill(child: ChildProcess): void {
  try { child.kill('SIGKILL'); } catch { /* gone */ }
}

function failure(line: string, status: number | null, signal: NodeJS.Signals | null, stderr: string): CommandError {
  return new CommandError(line, status, signal ? `${stderr}\nkilled by ${signal}` : stderr);
}

/** Accumulate a child's output, bounded: the first `max` bytes of stdout, the last of stderr. */
function collect(stream: Readable, max: number, keep: 'head' | 'tail'): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    if (keep === 'head') {
      if (text.length < max) text += chunk.slice(0, max - text.length);
    } else {
      text = (text + chunk).slice(-max);
    }
  });
  return () => text;
}

function isExecutableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}
