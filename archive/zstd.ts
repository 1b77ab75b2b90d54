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
 */

const MAX_STDERR = 4096;

export function zstdCompressor(level?: number): Duplex {
  return new ChildStage('zstd', ['-q', '-c', '-T0', ...(level === undefined ? [] : [`-${level}`])], 'zstd');
}

export function zstdDecompressor(): Duplex {
  return new ChildStage('zstd', ['-d', '-q', '-c'], 'zstd -d', true);
}

/** Is the zstd tool installed? (Checked before a file is created for its output.) */
export function requireZstd(): void {
  if (!findCommand('zstd')) throw new NotSupportedError('zstd is not installed', 'install zstd, or use a plain .tar');
}

class ChildStage extends Duplex {
  private readonly child: ChildProcess;
  private stderr = '';

  constructor(cmd: string, args: string[], private readonly what: string, private readonly decoding = false) {
    super();
    requireZstd();
    const cp = require('node:child_process') as typeof import('node:child_process');
    this.child = cp.spawn(findCommand(cmd)!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const { stdin, stdout, stderr } = this.child;
    stdin!.on('error', () => { /* EPIPE: the tool exited early; its status says why */ });
    stdout!.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) stdout!.pause();
    });
    stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString('utf8')).slice(-MAX_STDERR);
    });
    this.child.on('error', (err) => this.destroy(err));
    this.child.on('close', (code, signal) => {
      if (code === 0) {
        this.push(null);
        return;
      }
      if (this.destroyed) return;
      const line = this.stderr.trim().split('\n').filter(Boolean).pop() ?? '';
      const detail = `${this.what} failed (${signal ?? `exit ${code}`})${line ? `: ${line}` : ''}`;
      if (!this.decoding) return void this.destroy(new Error(detail));
      const truncated = /premature|truncated|incomplete|unexpected end/i.test(line);
      this.destroy(new StreamFault(truncated ? 'truncated' : 'corrupt', 'zstd', detail));
    });
  }

  override _read(): void {
    this.child.stdout!.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.child.stdin!.write(chunk)) cb();
    else this.child.stdin!.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin!.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin!.destroy();
      this.child.stdout!.destroy();
      try { this.child.kill('SIGKILL'); } catch { /* gone */ }
    }
    cb(err);
  }
}
