import { spawn, ChildProcess } from 'node:child_process';
import fs = require('node:fs');
import type { Socket } from 'node:net';
import { LaunchError } from '../lib/errors';
import { withSystemPath } from '../lib/process';
import type { IdMapConfig } from './config';
import { idMapArgs } from './idmap';
import { kernelViewArgs } from './kernel-views';
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
  /** The container's user namespace; none (privileged) when undefined. */
  idmap?: IdMapConfig;
  /** The seccomp filter (runtime/seccomp.ts). */
  seccomp: string;
}

/** The monitor's fd 3: one text line per message (see native/monitor.c). */
class ControlChannel {
  private buffer = '';
  private lines: string[] = [];
  private waiter?: (line: string | undefined) => void;
  private closed = false;

  constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => { this.closed = true; this.flush(); });
    socket.on('error', () => { this.closed = true; this.flush(); });
  }

  /** The next line; '' when the monitor closed the channel (it exited). */
  next(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new LaunchError(`the container's monitor did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        resolve(line ?? '');
      };
      this.flush();
    });
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
}

function spawnMonitor(args: string[], extraFds: number[] = []): { child: ChildProcess; ctl: ControlChannel } {
  const bin = nativeBinary('tsvz-monitor');
  if (!fs.existsSync(bin)) throw new LaunchError(`${bin} is missing`, 'run `npm install` to build native/');
  // detached: own session, so it outlives this CLI; fd 3 is the control socket.
  // The monitor of a restore runs CRIU, whose tools run as the container's root: the system's PATH (lib/process).
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe', ...extraFds], detached: true, env: withSystemPath(process.env) });
  return { child, ctl: new ControlChannel(child.stdio[3] as Socket) };
}

function failure(line: string, what: string): LaunchError {
  const msg = line.startsWith('error ') ? line.slice(6) : line || 'its monitor exited';
  return new LaunchError(`container failed to ${what}: ${msg}`);
}

/** Base of both launches: the monitor process and how to let go of it. */
abstract class MonitorHandle {
  abstract readonly child: ChildProcess;
  protected abstract readonly ctl: ControlChannel;

  /** Wait for "ready": the monitor serves the console and watches init. */
  protected async awaitReady(what: string, timeoutMs: number): Promise<void> {
    const line = await this.ctl.next(timeoutMs);
    if (line !== 'ready') throw failure(line, what);
    this.ctl.socket.destroy();
    this.child.unref();
  }

  /** Abort a launch in progress: the monitor kills what it started and exits. */
  abort(): void {
    try { this.ctl.socket.destroy(); } catch { /* already closed */ }
    try { this.child.kill('SIGKILL'); } catch { /* already gone */ }
    this.child.unref();
  }
}

/**
 * A monitor being started. The handshake (see native/monitor.c) is driven
 * step by step so the caller can wire the network between "pid" and "go".
 */
export class MonitorLaunch extends MonitorHandle {
  readonly child: ChildProcess;
  protected readonly ctl: ControlChannel;

  constructor(spec: LaunchSpec) {
    super();
    const args = ['--dir', spec.dir, '--rootfs', spec.rootfs, '--hostname', spec.hostname];
    for (const f of spec.cgroupProcsFiles) args.push('--cgroup', f);
    for (const e of spec.env) args.push('--env', e);
    for (const c of spec.capDrop) args.push('--cap-drop', String(c));
    if (spec.shareNet) args.push('--share-net');
    if (spec.idmap) args.push(...idMapArgs(spec.idmap), ...(spec.idmap.rootfs === 'idmapped' ? ['--idmapped-rootfs'] : []));
    args.push('--seccomp', spec.seccomp, ...kernelViewArgs());
    args.push('--', ...spec.init);
    ({ child: this.child, ctl: this.ctl } = spawnMonitor(args));
  }

  /** Wait for "pid N": init exists, sits in its cgroups and waits for "go". */
  async initPid(timeoutMs = 10_000): Promise<number> {
    const line = await this.ctl.next(timeoutMs);
    const m = /^pid (\d+)$/.exec(line);
    if (!m) throw failure(line, 'start');
    return Number(m[1]);
  }

  /** Let init continue into its root filesystem; resolves when it has exec'd. */
  async go(timeoutMs = 10_000): Promise<void> {
    this.ctl.socket.write('go\n');
    await this.awaitReady('start', timeoutMs);
  }
}

/**
 * A monitor that runs `criu swrk` for a restore, so the restored tree becomes
 * its child. Use `launcher` as the CRIU client's SwrkLauncher, then hand the
 * restored init and its console over with `handOver`.
 */
export class MonitorRestore extends MonitorHandle {
  child!: ChildProcess;
  protected ctl!: ControlChannel;
  private handoff?: number;
  private criuExit?: Promise<number>;

  /**
   * `idmappedRoot`: the monitor first mounts `src` at `dst` on the host
   * through an idmapped mount for `map` (CRIU's --root; the caller detaches
   * it when the restore is done).
   */
  constructor(private readonly dir: string, private readonly criuPath: string, private readonly idmappedRoot?: { src: string; dst: string; map: IdMapConfig }) {
    super();
  }

  readonly launcher = (criuEnd: number, inherited: number[]) => {
    if (inherited.length > 0) throw new LaunchError('inherited fds are not supported through the monitor');
    const { socketpair } = require('../lib/seqpacket') as typeof import('../lib/seqpacket');
    const [ours, theirs] = socketpair();
    try {
      const args = ['--dir', this.dir, '--restore', '--criu', this.criuPath];
      const r = this.idmappedRoot;
      if (r) args.push('--idmap-root', r.src, r.dst, ...idMapArgs(r.map));
      ({ child: this.child, ctl: this.ctl } = spawnMonitor(args, [criuEnd, theirs]));
    } finally {
      fs.closeSync(theirs);
    }
    this.handoff = ours;
    let stderr = '';
    const started = this.ctl.next(10_000).then((line) => {
      if (!/^criu \d+$/.test(line)) { stderr = line; throw failure(line, 'restore'); }
      return this.ctl.next(24 * 3600_000);
    });
    this.criuExit = started.then((line) => {
      const m = /^criu-exit (\d+)$/.exec(line);
      if (!m) { stderr = line; return -1; }
      return Number(m[1]);
    }, () => -1);
    return {
      pid: this.child.pid,
      exited: this.criuExit.then((code) => ({ code })),
      stderrTail: () => stderr,
    };
  };

  /** Give the monitor the restored init's pid and its console's pty master; wait for "ready". */
  async handOver(initPid: number, ptyMaster: number, timeoutMs = 10_000): Promise<void> {
    const { sendPacketWithFd } = require('../lib/seqpacket') as typeof import('../lib/seqpacket');
    if (this.handoff === undefined) throw new LaunchError('criu was not started through the monitor');
    sendPacketWithFd(this.handoff, Buffer.from(`init ${initPid}`), ptyMaster);
    this.closeHandoff();
    await this.awaitReady('restore', timeoutMs);
  }

  override abort(): void {
    this.closeHandoff();
    if (this.child) super.abort();
  }

  private closeHandoff(): void {
    if (this.handoff !== undefined) fs.closeSync(this.handoff);
    this.handoff = undefined;
  }
}
