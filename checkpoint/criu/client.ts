import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { criuBinary, criuEnv } from './binary';
import { describeError, NotSupportedError, SystemError } from '../../lib/errors';
import { CriuError } from './errors';
import { CriuFeatures, CriuOpts, CriuRequest, CriuResponse, decodeResponse, encodeRequest } from './proto';
import { recvPacket, sendPacket, socketpair } from '../../lib/seqpacket';
import { spawnWithFds } from '../../lib/spawn-fds';
import type { CriuVersion } from './version';
import { trace } from '../../lib/trace';

export type { CriuOpts, CriuFeatures, CriuResponse } from './proto';

/** fd numbers CRIU sees: the RPC socket, then the inherit_fd files. */
const RPC_FD = 3;
/** runc's level: a failed dump's log then says why. */
const DEFAULT_LOG_LEVEL = 4;
/**
 * A CRIU that neither answers nor exits would hold the container's lock for
 * ever: past this it is killed (and the operation fails and unwinds). Big
 * dumps to slow disks take minutes, so it is generous; TSVZ_CRIU_TIMEOUT
 * (seconds) sets another.
 */
const DEFAULT_TIMEOUT_S = 30 * 60;

function timeoutFromEnv(): number {
  const s = Number(process.env.TSVZ_CRIU_TIMEOUT);
  return (Number.isFinite(s) && s > 0 ? s : DEFAULT_TIMEOUT_S) * 1000;
}

export interface NotifyContext {
  /** The restored tree's root (host pid), for setup-namespaces and post-restore. */
  pid?: number;
  /** orphan-pts-master: the new pty master. Handed over: the hook closes it (the client does when there is no hook). */
  fd?: number;
}

export interface CriuHooks {
  /**
   * Called for each action script CRIU runs (opts.notifyScripts): pre-dump,
   * post-dump, network-lock, network-unlock, setup-namespaces, post-restore,
   * orphan-pts-master, ... Throwing answers "failed": CRIU aborts, and after a
   * failed post-dump it resumes the dumped tree.
   */
  onNotify?(script: string, ctx: NotifyContext): Promise<void> | void;
  /** Called once `criu swrk` runs, before the request is sent (to journal its pid). */
  onSpawned?(pid: number): Promise<void> | void;
}

export interface SwrkExit {
  code?: number | null;
  signal?: NodeJS.Signals | null;
  error?: Error;
}

/** A running `criu swrk`, however it was started. */
export interface SwrkProcess {
  pid?: number;
  /** Resolves once it exited (its log is then complete). */
  exited: Promise<SwrkExit>;
  /** The end of what it wrote to stderr, for errors. */
  stderrTail(): string;
}

/**
 * Starts `criu swrk 3` with `criuEnd` as its fd 3 and `inherited` as fds 4...
 * The default spawns it from this process; restore uses one that makes the
 * container's new monitor its parent, so the restored tree is the monitor's child.
 */
export type SwrkLauncher = (criuEnd: number, inherited: number[]) => SwrkProcess;

/**
 * CRIU over its RPC protocol: every call runs its own `criu swrk`, which
 * serves one request (and its notifications) and exits.
 */
export class CriuClient {
  constructor(readonly criuPath: string = criuBinary(), readonly timeoutMs: number = timeoutFromEnv()) {}

  private spawnSwrk(criuEnd: number, inherited: number[]): SwrkProcess {
    try {
      return spawnWithFds(this.criuPath, ['swrk', String(RPC_FD)], [criuEnd, ...inherited], criuEnv());
    } catch (error) {
      // As a child_process would: no pid, and the reason as the exit.
      return { exited: Promise.resolve({ error: error as Error }), stderrTail: () => '' };
    }
  }

  private spawnFor(launcher: SwrkLauncher | undefined, passed: number[]): { sock: number; swrk: SwrkProcess } {
    const [sock, criuEnd] = socketpair();
    try {
      return { sock, swrk: (launcher ?? ((end, inherited) => this.spawnSwrk(end, inherited)))(criuEnd, passed) };
    } catch (err) {
      fs.closeSync(sock);
      throw err;
    } finally {
      // CRIU has its own copy now; ours would keep the socket open after CRIU dies, so we'd never see EOF.
      fs.closeSync(criuEnd);
    }
  }

  async version(): Promise<CriuVersion> {
    const { version: v } = await this.call('version', { type: 'VERSION' });
    if (!v) throw new CriuError('version', { detail: 'CRIU reported success without a version' });
    return { major: v.majorNumber, minor: v.minorNumber, sublevel: v.sublevel ?? 0, gitid: v.gitid, name: v.name };
  }

  /** `criu check` over RPC. The scratch dir for its log is removed on success, kept on failure. */
  async check(): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-criu-check-'));
    const fd = fs.openSync(dir, 'r');
    try {
      await this.call('check', { type: 'CHECK', opts: { imagesDirFd: fd } });
    } finally {
      fs.closeSync(fd);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }

  /** CRIU's description of this host's CPU (cpuinfo.img) into the directory `dirFd`, as a migration or export carries it. */
  async cpuinfoDump(dirFd: number): Promise<void> {
    await this.call('cpuinfo dump', { type: 'CPUINFO_DUMP', opts: { imagesDirFd: dirFd, logFile: 'cpuinfo-dump.log' } });
  }

  /**
   * Whether a tree dumped on the CPU described by `dirFd`'s cpuinfo.img can
   * run on this one (CRIU's default: the FPU state and the instruction set).
   * Throws a CriuError whose message quotes CRIU's reason when it cannot.
   */
  async cpuinfoCheck(dirFd: number, workDirFd?: number): Promise<void> {
    await this.call('cpuinfo check', { type: 'CPUINFO_CHECK', opts: { imagesDirFd: dirFd, workDirFd, logFile: 'cpuinfo-check.log' } });
  }

  /** Which of the asked features this CRIU and kernel support (unasked ones come back false). */
  async featureCheck(want: CriuFeatures): Promise<CriuFeatures> {
    const { features } = await this.call('feature check', { type: 'FEATURE_CHECK', features: want });
    return features ?? {};
  }

  /**
   * Checkpoints opts.pid's tree into opts.imagesDirFd (log: dump.log). Resolves with CRIU's answer.
   * `launcher` starts the swrk (e.g. with more fds than inheritFd's).
   */
  dump(opts: CriuOpts, hooks: CriuHooks = {}, launcher?: SwrkLauncher): Promise<CriuResponse> {
    return this.call('dump', { type: 'DUMP', opts }, hooks, launcher);
  }

  /**
   * A pre-dump (pre-copy's round): opts.pid's memory while the tree runs
   * on, tracked so that the next round (parentImg) takes only what changed.
   */
  preDump(opts: CriuOpts, launcher?: SwrkLauncher): Promise<CriuResponse> {
    return this.call('pre-dump', { type: 'PRE_DUMP', opts }, {}, launcher);
  }

  /**
   * Restores the tree in opts.imagesDirFd (log: restore.log); resolves with its
   * root's host pid. inheritFd entries name fds open in this process: the
   * client passes them to CRIU.
   */
  async restore(opts: CriuOpts, hooks: CriuHooks = {}, launcher?: SwrkLauncher): Promise<number> {
    const resp = await this.call('restore', { type: 'RESTORE', opts }, hooks, launcher);
    if (!resp.restore) throw new CriuError('restore', { detail: 'CRIU reported success without a pid' });
    return resp.restore.pid;
  }

  /** One request on a fresh `criu swrk`; the log defaults to <operation>.log in the work dir. */
  private async call(operation: string, request: CriuRequest, hooks: CriuHooks = {}, launcher?: SwrkLauncher): Promise<CriuResponse> {
    const passed = request.opts?.inheritFd?.map((i) => i.fd) ?? [];
    const opts = request.opts && {
      logFile: `${operation}.log`,
      logLevel: DEFAULT_LOG_LEVEL,
      ...request.opts,
      inheritFd: request.opts.inheritFd?.map((i, n) => ({ key: i.key, fd: RPC_FD + 1 + n })),
    };
    const req: CriuRequest = { ...request, opts };
    const logPath = opts && logPathOf(opts.workDirFd ?? opts.imagesDirFd, opts.logFile);

    const { sock, swrk } = this.spawnFor(launcher, passed);
    trace(`criu ${operation}: request`);
    const exited = swrk.exited;
    if (swrk.pid === undefined) {
      fs.closeSync(sock);
      throw spawnError(this.criuPath, (await exited).error);
    }

    await hooks.onSpawned?.(swrk.pid);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(swrk.pid!, 'SIGKILL'); } catch { /* gone already */ }
    }, this.timeoutMs);
    let answer: Answer | undefined;
    let broken: unknown;
    try {
      answer = await converse(sock, req, hooks);
      trace(`criu ${operation}: answered`);
    } catch (err) {
      broken = err;
    } finally {
      clearTimeout(timer);
      fs.closeSync(sock);
      await exited; // reaped, and its log complete
      trace(`criu ${operation}: exited`);
    }
    // Killed for taking too long: that is the story, not the broken socket it left.
    if (timedOut) {
      throw new CriuError(operation, { logPath, detail: `CRIU gave no answer within ${this.timeoutMs / 1000} s and was killed (TSVZ_CRIU_TIMEOUT sets the limit)` });
    }
    if (!answer) throw broken;

    const { resp, hookFailure } = answer;
    if (!resp) {
      const exit = await exited;
      const how = exit.signal ? `killed by ${exit.signal}` : `exit ${exit.code}`;
      const said = swrk.stderrTail().trim().split('\n').pop();
      throw new CriuError(operation, { logPath, detail: `criu swrk ended without an answer (${how})${said ? `: ${said}` : ''}` });
    }
    if (!resp.success) {
      throw new CriuError(operation, {
        logPath,
        crErrno: resp.crErrno,
        crErrmsg: resp.crErrmsg,
        detail: hookFailure && `${hookFailure.script} hook failed: ${describeError(hookFailure.error)}`,
        cause: hookFailure?.error,
      });
    }
    return resp;
  }
}

interface Answer {
  /** CRIU's final answer; null when it closed the socket without one. */
  resp: CriuResponse | null;
  /** The first notify hook that threw. */
  hookFailure?: { script: string; error: unknown };
}

/** Sends the request, answers each NOTIFY through the hook, returns the final response. */
async function converse(sock: number, req: CriuRequest, hooks: CriuHooks): Promise<Answer> {
  let hookFailure: Answer['hookFailure'];
  sendPacket(sock, encodeRequest(req));
  for (;;) {
    const packet = await recvPacket(sock);
    if (!packet) return { resp: null, hookFailure };
    const resp = decodeResponse(packet.data);
    if (resp.type !== 'NOTIFY') return { resp, hookFailure };
    const script = resp.notify?.script ?? '';
    let ok = true;
    if (hooks.onNotify) {
      try {
        await hooks.onNotify(script, { pid: resp.notify?.pid, fd: packet.fd });
      } catch (error) {
        ok = false;
        hookFailure ??= { script, error };
      }
    } else if (packet.fd !== undefined) {
      fs.closeSync(packet.fd);
    }
    try {
      sendPacket(sock, encodeRequest({ type: 'NOTIFY', notifySuccess: ok }));
    } catch {
      return { resp: null, hookFailure }; // CRIU went away: its exit status says how
    }
  }
}

/** Where CRIU writes the log: log_file in the work dir, which is the images dir unless set. */
function logPathOf(workDirFd: number, logFile: string): string | undefined {
  try {
    return path.join(fs.readlinkSync(`/proc/self/fd/${workDirFd}`), logFile);
  } catch {
    return undefined; // a bad fd: CRIU will say so
  }
}

function spawnError(criuPath: string, error: Error | undefined): Error {
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    return new NotSupportedError(`CRIU is not installed (${criuPath} not found)`, 'run scripts/setup-host');
  }
  return new SystemError(`cannot run ${criuPath}`, error);
}
