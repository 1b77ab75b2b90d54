import { spawn, spawnSync } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import { CommandError, NotSupportedError, SystemError } from '../lib/errors';
import { commandLine, findCommand, RunResult } from '../lib/process';
import { StorageError } from './errors';

/**
 * Running storage tools (btrfs, zfs, lvcreate, cp...): quick metadata
 * commands synchronously, with an optional time limit so a hung daemon
 * (zfs-fuse) gives an error instead of a hung tsvz; long copies and
 * send/receive asynchronously, with their stdio as Node streams.
 */

export interface ToolOptions {
  input?: string;
  /** Return the result on a non-zero exit instead of throwing. */
  allowFail?: boolean;
  /** Kill the tool after this long (default: no limit). */
  timeoutMs?: number;
}

const MAX_OUTPUT = 64 * 1024 * 1024;
const MAX_COLLECTED = 64 * 1024;

function resolveTool(cmd: string): string {
  const file = findCommand(cmd);
  if (!file) throw new NotSupportedError(`${cmd}: command not found`, `install ${cmd} (scripts/setup-host)`);
  return file;
}

export function tool(cmd: string, args: string[], opts: ToolOptions = {}): RunResult {
  const r = spawnSync(resolveTool(cmd), args, { input: opts.input, encoding: 'utf8', maxBuffer: MAX_OUTPUT, timeout: opts.timeoutMs, killSignal: 'SIGKILL' });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
      throw new StorageError(`${commandLine(cmd, args)} did not finish within ${Math.round((opts.timeoutMs ?? 0) / 1000)} s`, { cause: r.error });
    }
    throw new SystemError(`cannot run ${commandLine(cmd, args)}: ${r.error.message}`, r.error);
  }
  const result = { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  if (r.status !== 0 && !opts.allowFail) throw failure(cmd, args, r.status, r.signal, r.stderr);
  return result;
}

/** Did the tool exit 0? (probes: "does this dataset exist") */
export function succeeds(cmd: string, args: string[], timeoutMs?: number): boolean {
  return tool(cmd, args, { allowFail: true, timeoutMs }).status === 0;
}

/**
 * Run a tool without blocking the event loop (long copies, receives),
 * optionally feeding a stream to its stdin. If the input fails (the sender
 * broke), the tool is killed and the input's error is thrown: it says why,
 * the tool's "short stream" would not. If the tool fails first, the input is
 * destroyed so the sender stops too.
 */
export function toolAsync(cmd: string, args: string[], input?: Readable): Promise<RunResult> {
  let file: string;
  try {
    file = resolveTool(cmd);
  } catch (err) {
    input?.destroy();
    return Promise.reject(err);
  }
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const stdout = collect(child.stdout!);
    const stderr = collect(child.stderr!);
    let inputError: Error | undefined;
    if (input && child.stdin) {
      const stdin = child.stdin;
      input.on('error', (err) => {
        inputError ??= err;
        // Close the pipe as well as killing: with zfs-fuse the daemon reads it, and must see EOF to abort.
        stdin.destroy();
        child.kill('SIGKILL');
      });
      stdin.on('error', () => { /* EPIPE: the tool exited early; its status says why */ });
      input.pipe(stdin);
    }
    child.on('error', (err) => reject(new SystemError(`cannot run ${commandLine(cmd, args)}: ${err.message}`, err)));
    child.on('close', (code, signal) => {
      if (inputError) return reject(inputError);
      if (code !== 0) {
        if (input && child.stdin) input.unpipe(child.stdin);
        input?.destroy();
        return reject(failure(cmd, args, code, signal, stderr()));
      }
      resolve({ status: code, signal: null, stdout: stdout(), stderr: stderr() });
    });
  });
}

/**
 * A tool's stdout as a stream. A non-zero exit destroys the stream with a
 * CommandError; `onClose` runs once the tool has exited (to unmount or drop
 * what it was reading). Destroying the stream kills the tool.
 */
export function toolOutput(cmd: string, args: string[], opts: { onClose?: () => void | Promise<void> } = {}): Readable {
  const out = new PassThrough();
  const child = spawn(resolveTool(cmd), args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
  child.on('close', (code, signal) => void finish(code === 0 ? undefined : failure(cmd, args, code, signal, stderr())));
  out.on('close', () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Close our end of the pipe too: with zfs-fuse the daemon, not the killed
    // `zfs send`, writes into it, and would block for ever holding the dataset.
    child.stdout.destroy();
    child.kill('SIGKILL');
  });
  return out;
}

function failure(cmd: string, args: string[], status: number | null, signal: NodeJS.Signals | null, stderr: string): CommandError {
  return new CommandError(commandLine(cmd, args), status, signal ? `${stderr}\nkilled by ${signal}` : stderr);
}

/** Accumulate a child's output (bounded) and return a reader for it. */
function collect(stream: Readable): () => string {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    if (text.length < MAX_COLLECTED) text += chunk;
  });
  return () => text;
}
