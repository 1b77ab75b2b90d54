import { spawn, spawnSync } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import { CommandError, NotSupportedError, SystemError } from '../errors';
import { commandLine, findCommand, RunResult } from '../host-command';
import { StorageError } from './errors';

/**
 * Storage tools (btrfs, zfs, lvcreate, cp...) run with a time limit, so a hung
 * daemon (zfs-fuse) gives an error instead of a hung tsvz; and their stdio as
 * Node streams for send/receive.
 */

export interface ToolOptions {
  input?: string;
  /** Return the result on a non-zero exit instead of throwing. */
  allowFail?: boolean;
  /** Kill the tool after this long (default 10 minutes: copies of big trees take a while). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const MAX_OUTPUT = 64 * 1024 * 1024;
const MAX_STDERR = 64 * 1024;

function resolveTool(cmd: string): string {
  const file = findCommand(cmd);
  if (!file) throw new NotSupportedError(`${cmd}: command not found`, `install ${cmd} (scripts/setup-host)`);
  return file;
}

export function tool(cmd: string, args: string[], opts: ToolOptions = {}): RunResult {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const r = spawnSync(resolveTool(cmd), args, { input: opts.input, encoding: 'utf8', maxBuffer: MAX_OUTPUT, timeout, killSignal: 'SIGKILL' });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
      throw new StorageError(`${commandLine(cmd, args)} did not finish within ${Math.round(timeout / 1000)} s`, { cause: r.error });
    }
    throw new SystemError(`cannot run ${commandLine(cmd, args)}: ${r.error.message}`, r.error);
  }
  const result = { status: r.status, stdout: r.stdout, stderr: r.stderr };
  if (r.status !== 0 && !opts.allowFail) {
    throw new CommandError(commandLine(cmd, args), r.status, r.signal ? `${r.stderr}\nkilled by ${r.signal}` : r.stderr);
  }
  return result;
}

/** Did the tool exit 0? (for probes: "does this dataset exist") */
export function succeeds(cmd: string, args: string[], timeoutMs?: number): boolean {
  return tool(cmd, args, { allowFail: true, timeoutMs }).status === 0;
}

/**
 * A command's stdout as a stream. A non-zero exit destroys the stream with a
 * CommandError; `onClose` runs once the command has exited (to unmount or
 * drop what the command was reading). Destroying the stream kills the command.
 */
export function toolOutput(cmd: string, args: string[], opts: { onClose?: () => void | Promise<void> } = {}): Readable {
  const out = new PassThrough();
  let child;
  try {
    child = spawn(resolveTool(cmd), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    void Promise.resolve(opts.onClose?.()).finally(() => out.destroy(err as Error));
    return out;
  }
  const stderr = collect(child.stderr);
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
  child.on('error', (err) => void finish(new SystemError(`cannot run ${commandLine(cmd, args)}: ${err.message}`, err)));
  child.on('close', (code, signal) => {
    void finish(code === 0 ? undefined : new CommandError(commandLine(cmd, args), code, signal ? `${stderr()}\nkilled by ${signal}` : stderr()));
  });
  out.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return out;
}

/**
 * Feed a stream to a command's stdin and wait for it to exit 0. If the input
 * fails (the sender broke), the command is killed and the input's error is
 * thrown: it says why, the receiver's "short stream" would not. If the
 * command fails first, the input is destroyed so the sender stops too.
 */
export function toolInput(cmd: string, args: string[], input: Readable): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(resolveTool(cmd), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      input.destroy();
      reject(err);
      return;
    }
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    let inputError: Error | undefined;
    input.on('error', (err) => {
      inputError ??= err;
      child.kill('SIGKILL');
    });
    child.stdin.on('error', () => { /* EPIPE: the command exited early; its status says why */ });
    input.pipe(child.stdin);
    child.on('error', (err) => reject(new SystemError(`cannot run ${commandLine(cmd, args)}: ${err.message}`, err)));
    child.on('close', (code, signal) => {
      if (inputError) return reject(inputError);
      if (code !== 0) {
        input.unpipe(child.stdin);
        input.destroy();
        return reject(new CommandError(commandLine(cmd, args), code, signal ? `${stderr()}\nkilled by ${signal}` : stderr()));
      }
      resolve({ status: code, stdout: stdout(), stderr: stderr() });
    });
  });
}

/** Accumulate a child's output (bounded) and return a reader for it. */
function collect(stream: Readable): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    if (text.length < MAX_STDERR) text += chunk;
  });
  return () => text;
}
