import type { ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { NotSupportedError } from '../lib/errors';
import { findCommand } from '../lib/process';
import { StreamFault } from './fault';

/**
 * zstd as a stream stage: the zstd tool in a child process, bytes in
 * through its stdin, out through its stdout. Node 20's zlib has no zstd;
 * the tool is multi-threaded (-T0) and keeps the work off our event loop.
 * Backpressure runs both ways: writes wait for the pipe to drain, and the
 * tool's output is paused while our reader is full. The stage ends only
 * once the tool exited 0, so a reader never takes a failed run's partial
 * output as complete; a failed decompression is a StreamFault.
 *
 * With a file descriptor for one side (`fds`), the tool reads or writes
 * that file itself, and the stage is only the other side: the compressed
 * bytes of a file need not pass through us at all.
 */

const MAX_STDERR = 4096;

export interface StageFds {
  /** The tool reads this file instead of what is written to the stage (which then takes nothing). */
  stdin?: number;
  /** The tool writes this file instead of the stage's readable side (which then only ends). */
  stdout?: number;
}

export function zstdCompressor(fds: StageFds = {}): Duplex {
  return new ChildStage('zstd', ['-q', '-c', '-T0'], 'zstd', false, fds);
}

export function zstdDecompressor(fds: StageFds = {}): Duplex {
  return new ChildStage('zstd', ['-d', '-q', '-c'], 'zstd -d', true, fds);
}

/** Is the zstd tool installed? (Checked before a file is created for its output.) */
export function requireZstd(): void {
  if (!findCommand('zstd')) throw new NotSupportedError('zstd is not installed', 'install zstd, or use a plain .tar');
}

class ChildStage extends Duplex {
  private readonly child: ChildProcess;
  private stderr = '';
  /** null once the tool exited 0, its failure once it failed; undefined while it runs. */
  private exited: Error | null | undefined;
  private readonly waiters: ((err?: Error) => void)[] = [];

  constructor(cmd: string, args: string[], private readonly what: string, private readonly decoding: boolean, fds: StageFds) {
    super();
    requireZstd();
    const cp = require('node:child_process') as typeof import('node:child_process');
    this.child = cp.spawn(findCommand(cmd)!, args, { stdio: [fds.stdin ?? 'pipe', fds.stdout ?? 'pipe', 'pipe'] });
    const { stdin, stdout, stderr } = this.child;
    stdin?.on('error', () => { /* EPIPE: the tool exited early; its status says why */ });
    stdout?.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stdout.pause();
    });
    stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString('utf8')).slice(-MAX_STDERR);
    });
    this.child.on('error', (err) => this.destroy(err));
    this.child.on('close', (code, signal) => {
      const failure = code === 0 ? undefined : this.failure(code, signal);
      this.exited = failure ?? null;
      for (const waiter of this.waiters.splice(0)) waiter(failure);
      if (!failure) this.push(null);
      else if (!this.destroyed) this.destroy(failure);
    });
    if (!stdin) this.end(); // nothing to write: the tool reads its file
    if (!stdout) this.resume(); // nothing to read: flow, so the end is seen
  }

  override _read(): void {
    this.child.stdout?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const stdin = this.child.stdin;
    if (!stdin) return cb(new Error(`${this.what} reads its own file: nothing may be written to it`));
    if (stdin.write(chunk)) cb();
    else stdin.once('drain', () => cb());
  }

  /** Finished means the tool has all of it and exited 0 (with stdout a file: the file is complete). */
  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin?.end();
    if (this.exited !== undefined) return cb(this.exited);
    this.waiters.push((err) => cb(err));
  }

  private failure(code: number | null, signal: NodeJS.Signals | null): Error {
    const line = this.stderr.trim().split('\n').filter(Boolean).pop() ?? '';
    const detail = `${this.what} failed (${signal ?? `exit ${code}`})${line ? `: ${line}` : ''}`;
    if (!this.decoding) return new Error(detail);
    const truncated = /premature|truncated|incomplete|unexpected end/i.test(line);
    return new StreamFault(truncated ? 'truncated' : 'corrupt', 'zstd', detail);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin?.destroy();
      this.child.stdout?.destroy();
      try { this.child.kill('SIGKILL'); } catch { /* gone */ }
    }
    cb(err);
  }
}
