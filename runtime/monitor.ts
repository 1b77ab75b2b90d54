import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type { Socket } from 'node:net';
import { LaunchError } from './errors';
import { nativeBinary } from './paths';

export interface LaunchSpec {
  dir: string;
  rootfs: string;
  hostname: string;
  cgroupProcsFiles: string[];
  env: string[];
  capDrop: number[];
  shareNet: boolean;
  init: string[];
}

/**
 * A monitor being started. The handshake (see native/monitor.c) is driven
 * step by step so the caller can wire the network between "pid" and "go".
 */
export class MonitorLaunch {
  readonly child: ChildProcess;
  private readonly ctl: Socket;
  private buffer = '';
  private lines: string[] = [];
  private waiter?: (line: string | undefined) => void;
  private closed = false;

  constructor(spec: LaunchSpec) {
    const bin = nativeBinary('tsvz-monitor');
    if (!fs.existsSync(bin)) throw new LaunchError(`${bin} is missing`, 'run `npm install` to build native/');
    const args = ['--dir', spec.dir, '--rootfs', spec.rootfs, '--hostname', spec.hostname];
    for (const f of spec.cgroupProcsFiles) args.push('--cgroup', f);
    for (const e of spec.env) args.push('--env', e);
    for (const c of spec.capDrop) args.push('--cap-drop', String(c));
    if (spec.shareNet) args.push('--share-net');
    args.push('--', ...spec.init);
    // detached: own session, so it outlives this CLI; fd 3 is the control socket.
    this.child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true });
    this.ctl = this.child.stdio[3] as Socket;
    this.ctl.setEncoding('utf8');
    this.ctl.on('data', (chunk: string) => this.onData(chunk));
    this.ctl.on('close', () => { this.closed = true; this.flush(); });
    this.ctl.on('error', () => { this.closed = true; this.flush(); });
  }

  /** Wait for "pid N": init exists, sits in its cgroups and waits for "go". */
  async initPid(timeoutMs = 10_000): Promise<number> {
    const line = await this.expect(timeoutMs);
    const m = /^pid (\d+)$/.exec(line);
    if (!m) throw this.failure(line);
    return Number(m[1]);
  }

  /** Let init continue into its root filesystem; resolves when it has exec'd. */
  async go(timeoutMs = 10_000): Promise<void> {
    this.ctl.write('go\n');
    const line = await this.expect(timeoutMs);
    if (line !== 'ready') throw this.failure(line);
    this.ctl.destroy();
    this.child.unref();
  }

  /** Abort a launch in progress: the monitor kills init and exits. */
  abort(): void {
    try { this.ctl.destroy(); } catch { /* already closed */ }
    try { this.child.kill('SIGKILL'); } catch { /* already gone */ }
    this.child.unref();
  }

  private failure(line: string): LaunchError {
    const msg = line.startsWith('error ') ? line.slice(6) : line || 'monitor exited during start';
    return new LaunchError(`container failed to start: ${msg}`);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let i: number;
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      this.lines.push(this.buffer.slice(0, i));
      this.buffer = this.buffer.slice(i + 1);
    }
    this.flush();
  }

  private flush(): void {
    if (!this.waiter) return;
    if (this.lines.length > 0) { const w = this.waiter; this.waiter = undefined; w(this.lines.shift()); }
    else if (this.closed) { const w = this.waiter; this.waiter = undefined; w(undefined); }
  }

  private expect(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new LaunchError(`container did not start within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        resolve(line ?? '');
      };
      this.flush();
    });
  }
}

/** Pids of monitors serving container dir `dir` (found even when no state recorded them). */
export function findMonitorPids(dir: string): number[] {
  const bin = nativeBinary('tsvz-monitor');
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try { argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    if (!argv[0]?.endsWith('tsvz-monitor') && argv[0] !== bin) continue;
    const i = argv.indexOf('--dir');
    if (i >= 0 && argv[i + 1] === dir) found.push(Number(entry));
  }
  return found;
}
