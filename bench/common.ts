/**
 * What the benchmarks share: spawning and timing commands with a scrubbed
 * environment, statistics, result files, and the runc bundle built from the
 * same rootfs tsvz made (so both runtimes run the same files with the same
 * capabilities).
 *
 * Every command spawned through run() gets this process's environment minus
 * SCRUBBED_ENV (see configureChildEnv): NODE_EXTRA_CA_CERTS makes every node
 * process parse a CA bundle at startup (~40 ms here, twice what node itself
 * needs), which would swamp what is measured and differs between machines.
 */
import { spawnSync, SpawnSyncOptions, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { droppedCapabilities } from '../runtime/capabilities';

export const REPO = path.resolve(__dirname, '..', '..');
export const TSVZ_BIN = path.join(REPO, 'bin', 'tsvz');
export const NODE = process.execPath;

// ---------------------------------------------------------------- environment

/** Removed from every measured command's environment (see the header). */
export const SCRUBBED_ENV = ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS', 'TSVZ_ROOT'];
let childEnv: NodeJS.ProcessEnv = process.env;

export interface ChildEnvOptions {
  /** Keep SCRUBBED_ENV (--inherit-env). */
  inherit?: boolean;
  /** Directories put first in the children's PATH (without duplicates). */
  pathFirst?: string[];
}

/** Sets the environment run() gives its commands; returns the names scrubbed. */
export function configureChildEnv(opts: ChildEnvOptions = {}): string[] {
  const scrubbed = opts.inherit ? [] : SCRUBBED_ENV.filter((k) => process.env[k] !== undefined);
  childEnv = { ...process.env };
  for (const k of scrubbed) delete childEnv[k];
  if (opts.pathFirst?.length) {
    const rest = (childEnv.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter((d) => d && !opts.pathFirst!.includes(d));
    childEnv.PATH = [...opts.pathFirst, ...rest].join(':');
  }
  return scrubbed;
}

export function currentChildEnv(): NodeJS.ProcessEnv { return childEnv; }

// ---------------------------------------------------------------- statistics

export interface Stats { samples: number[]; median: number; min: number; p90: number }

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  // nearest-rank p90
  const p90 = s[Math.min(n - 1, Math.ceil(0.9 * n) - 1)];
  return { samples: samples.map(round), median: round(median), min: round(s[0]), p90: round(p90) };
}

export function round(ms: number): number { return Math.round(ms * 100) / 100; }

// ---------------------------------------------------------------- running and timing

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class Interrupted extends Error {}

/** Run a benchmark's main when its file is the script: exit with its code, 130 if interrupted, 1 with a one-line error otherwise. */
export function runAsScript(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof Interrupted ? 130 : 1);
    },
  );
}

/**
 * SIGINT/SIGTERM set a flag instead of killing the benchmark, so its finally
 * blocks still remove containers; pollInterrupt() between synchronous steps
 * lets the handler run and throws Interrupted once it has.
 */
let interrupted = false;
const onSignal = (): void => { interrupted = true; };
export function watchSignals(): () => void {
  interrupted = false;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
}

export async function pollInterrupt(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  if (interrupted) throw new Interrupted('interrupted');
}

export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, env: childEnv, ...opts }) as SpawnSyncReturns<string>;
}

export function must(r: SpawnSyncReturns<string>, what: string): SpawnSyncReturns<string> {
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    throw new Error(`${what} failed (${why}): ${(r.stderr ?? '').toString().trim()} ${(r.stdout ?? '').toString().trim()}`.trim());
  }
  return r;
}

/** Wall-clock of `fn` in ms (high-resolution). */
export function timed(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Poll `cond` with the same back-off tsvz stop uses internally (2 ms doubling, capped at 50 ms). */
export function waitUntil(cond: () => boolean, ms: number, what: string): void {
  const deadline = Date.now() + ms;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (cond()) return;
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    sleepSync(delay);
  }
}

// ---------------------------------------------------------------- host and results

export interface HostInfo { node: string; kernel: string; cpus: number; cpuModel?: string; runc: string; tsvzCommit?: string }

export function hostInfo(): HostInfo {
  const first = (r: SpawnSyncReturns<string>): string => (r.stdout ?? '').split('\n')[0].trim();
  return {
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    runc: first(run('runc', ['--version'])),
    tsvzCommit: first(run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])) || undefined,
  };
}

/** Writes bench/results/<name>-<ISO date>.json; returns its path. */
export function writeResult(name: string, date: Date, result: unknown): string {
  const outDir = path.join(REPO, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `${name}-${date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
  fs.writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
  return outFile;
}

// ---------------------------------------------------------------- runc

/** `runc --root STATE --log LOG ...` with runc's own log quoted on failure. */
export class RuncCli {
  constructor(readonly stateRoot: string, readonly bundle: string, readonly id: string, readonly logFile: string) {}

  cmd(args: string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
    return run('runc', ['--root', this.stateRoot, '--log', this.logFile, ...args], opts);
  }

  mustRunc(r: SpawnSyncReturns<string>, what: string): void {
    if (r.error || r.status !== 0) {
      let log = '';
      try { log = fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | '); } catch { /* none */ }
      must(r, `${what}${log ? ` [runc log: ${log}]` : ''}`);
    }
  }

  status(): string {
    const r = this.cmd(['state', this.id]);
    if (r.status !== 0) return 'gone';
    return (JSON.parse(r.stdout) as { status: string }).status;
  }

  /** Delete the container, then the cgroup dirs runc 1.1.5 leaves in some v1 controllers on hybrid hosts. */
  destroy(): void {
    this.cmd(['delete', '--force', this.id]);
    for (const ctrl of fs.readdirSync('/sys/fs/cgroup')) {
      try { fs.rmdirSync(path.join('/sys/fs/cgroup', ctrl, this.id)); } catch { /* not there, or busy */ }
    }
  }
}

const CAP_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/**
 * The capabilities a tsvz container keeps: the host's bounding set minus
 * tsvz's dropped list, so runc's init has the same privileges. CAP_SYS_RESOURCE
 * is in the dropped list (and not in this host's bounding set: runc fails
 * "unable to apply caps" when asked for it).
 */
export function containerCaps(): string[] {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapBnd:'));
  const bnd = BigInt(`0x${(line ?? 'CapBnd: 0').split(/\s+/)[1]}`);
  const dropped = new Set(droppedCapabilities(false));
  return CAP_NAMES.filter((name, i) => (bnd >> BigInt(i)) & 1n && !dropped.has(i) && name !== 'CAP_SYS_RESOURCE');
}

interface RuncSpec {
  process: { terminal: boolean; args: string[]; env: string[]; capabilities: Record<string, string[]> };
  root: { path: string; readonly: boolean };
  hostname?: string;
  linux: { namespaces: { type: string }[] };
}

export interface BundleOptions {
  hostname: string;
  /** The container's init (default: busybox's /sbin/init). */
  args?: string[];
}

/**
 * A runc bundle whose rootfs is a copy (cp -a) of `rootfs`: `runc spec`'s
 * defaults with tsvz's namespaces (pid, mount, uts, ipc, network, cgroup),
 * capabilities and environment, terminal false.
 */
export function buildBundle(bundle: string, rootfs: string, opts: BundleOptions): void {
  fs.mkdirSync(bundle, { recursive: true });
  must(run('cp', ['-a', rootfs, path.join(bundle, 'rootfs')]), 'cp -a rootfs');
  must(run('runc', ['spec', '--bundle', bundle]), 'runc spec');
  const file = path.join(bundle, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8')) as RuncSpec;
  spec.process.args = opts.args ?? ['/sbin/init'];
  spec.process.terminal = false;
  spec.process.env = [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'TERM=linux', 'container=runc',
  ];
  const caps = containerCaps();
  for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient']) spec.process.capabilities[set] = [...caps];
  spec.root = { path: 'rootfs', readonly: false };
  spec.hostname = opts.hostname;
  spec.linux.namespaces = ['pid', 'mount', 'uts', 'ipc', 'network', 'cgroup'].map((type) => ({ type }));
  const text = JSON.stringify(spec, null, 2);
  if (text.includes('CAP_SYS_RESOURCE')) throw new Error('bundle config still names CAP_SYS_RESOURCE');
  fs.writeFileSync(file, text);
}

/** Options every benchmark takes; `extra` handles its own (returns how many argv entries it consumed, 0 if not its). */
export interface CommonOptions { iterations: number; warmup: number; check: boolean; keep: boolean; inheritEnv: boolean }

export function parseCommonArgs<T extends object>(
  argv: string[],
  defaults: CommonOptions & T,
  usage: string,
  extra?: (o: CommonOptions & T, arg: string, next: () => string) => boolean,
): CommonOptions & T {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const num = (): number => {
      const v = Number(next());
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--iterations' || a === '-n') o.iterations = Math.max(1, num());
    else if (a === '--warmup') o.warmup = num();
    else if (a === '--check') o.check = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--inherit-env') o.inheritEnv = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    } else if (!extra?.(o, a, next)) throw new Error(`unknown argument "${a}"`);
  }
  return o;
}

/** A non-negative integer option value. */
export function intArg(name: string, value: string): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} needs a non-negative integer`);
  return v;
}
