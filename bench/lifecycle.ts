/**
 * Lifecycle benchmark: tsvz against runc on the same busybox rootfs.
 *
 *   start : `tsvz start b1`                  vs `runc run -d ID`
 *   exec  : `tsvz exec b1 -- true`           vs `runc exec ID true`
 *   stop  : `tsvz stop b1`                   vs `runc kill ID TERM` + wait for "stopped" + `runc delete ID`
 *   kill  : `tsvz kill b1 KILL` + wait for "stopped" (`tsvz info --json`)
 *                                            vs `runc kill ID KILL` + wait for "stopped" + `runc delete ID`
 *   list  : `tsvz list`                      vs `node -e 0`
 *
 * Each figure is the wall-clock time of the whole command(s), spawned with
 * spawnSync and timed with process.hrtime; median, min and p90 over N
 * iterations after a warm-up. Both stop variants send SIGTERM to busybox init
 * and return once the container is gone, so both include busybox init's own
 * shutdown (~2 s of built-in sleeps): the ratio there is dominated by it.
 *
 * Targets (from the issue): every tsvz figure at most 3x runc's; `tsvz list`
 * at most 1.5x a bare `node -e 0`.
 *
 * Writes bench/results/lifecycle-<ISO date>.json and prints a markdown table.
 * Needs root, runc and /bin/busybox; uses only local resources.
 *
 * Every command runs with this process's environment minus the variables in
 * SCRUBBED_ENV: NODE_EXTRA_CA_CERTS makes every node process parse a CA
 * bundle at startup (~40 ms here, twice what node itself needs), which would
 * swamp what is measured and differs between machines. --inherit-env keeps them.
 *
 * Usage: node dist/bench/lifecycle.js [--iterations N] [--warmup N] [--check] [--keep] [--inherit-env]
 *   --check        exit 1 when a target is missed (default: report only)
 *   --keep         leave the temporary directory behind (containers are still removed)
 *   --inherit-env  do not scrub SCRUBBED_ENV from the commands' environment
 */
import { spawnSync, SpawnSyncOptions, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DROPPED_CAPABILITIES } from '../runtime/config';

const REPO = path.resolve(__dirname, '..', '..');
const TSVZ_BIN = path.join(REPO, 'bin', 'tsvz');
const NODE = process.execPath;

interface Options { iterations: number; warmup: number; check: boolean; keep: boolean; inheritEnv: boolean }

/** Removed from every measured command's environment (see the header). */
const SCRUBBED_ENV = ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS', 'TSVZ_ROOT'];
let childEnv: NodeJS.ProcessEnv = process.env;

export interface Stats { samples: number[]; median: number; min: number; p90: number }

export interface Row {
  operation: string;
  description: string;
  tsvz: Stats;
  baselineName: string;
  baseline: Stats;
  ratio: number;
  target: number;
  met: boolean;
}

class Interrupted extends Error {}

// ---------------------------------------------------------------- helpers

function parseArgs(argv: string[]): Options {
  const o: Options = { iterations: 10, warmup: 1, check: false, keep: false, inheritEnv: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--iterations' || a === '-n') o.iterations = Math.max(1, num());
    else if (a === '--warmup') o.warmup = num();
    else if (a === '--check') o.check = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--inherit-env') o.inheritEnv = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: lifecycle [--iterations N] [--warmup N] [--check] [--keep] [--inherit-env]\n');
      process.exit(0);
    } else throw new Error(`unknown argument "${a}"`);
  }
  return o;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  // nearest-rank p90
  const p90 = s[Math.min(n - 1, Math.ceil(0.9 * n) - 1)];
  return { samples: samples.map(round), median: round(median), min: round(s[0]), p90: round(p90) };
}

function round(ms: number): number { return Math.round(ms * 100) / 100; }

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Lets pending signal handlers (SIGINT) run between synchronous steps. */
let interrupted = false;
async function checkpoint(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  if (interrupted) throw new Interrupted('interrupted');
}

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, env: childEnv, ...opts }) as SpawnSyncReturns<string>;
}

function must(r: SpawnSyncReturns<string>, what: string): SpawnSyncReturns<string> {
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    throw new Error(`${what} failed (${why}): ${(r.stderr ?? '').toString().trim()} ${(r.stdout ?? '').toString().trim()}`.trim());
  }
  return r;
}

/** Wall-clock of `fn` in ms (high-resolution). */
function timed(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Poll `cond` with the same back-off tsvz stop uses internally (2 ms doubling, capped at 50 ms). */
function waitUntil(cond: () => boolean, ms: number, what: string): void {
  const deadline = Date.now() + ms;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (cond()) return;
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    sleepSync(delay);
  }
}

// ---------------------------------------------------------------- the two runtimes

class Tsvz {
  constructor(readonly root: string, readonly name: string) {}

  cmd(args: string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
    return run(NODE, [TSVZ_BIN, '--root', this.root, ...args], opts);
  }

  create(): void { must(this.cmd(['create', this.name, '--template', 'busybox']), 'tsvz create'); }
  start(): void { must(this.cmd(['start', this.name]), 'tsvz start'); }
  exec(): void { must(this.cmd(['exec', this.name, '--', 'true']), 'tsvz exec'); }
  stop(): void { must(this.cmd(['stop', this.name]), 'tsvz stop'); }
  list(): void { must(this.cmd(['list']), 'tsvz list'); }

  state(): string {
    const r = must(this.cmd(['info', '--json', this.name]), 'tsvz info');
    return (JSON.parse(r.stdout) as { state: string }).state;
  }

  /** SIGKILL to init, then wait until tsvz reports it gone. */
  kill(): void {
    must(this.cmd(['kill', this.name, 'KILL']), 'tsvz kill');
    waitUntil(() => this.state() !== 'running', 10_000, 'tsvz container to stop');
  }

  destroy(): void { this.cmd(['destroy', '--force', this.name]); }
}

class Runc {
  constructor(readonly stateRoot: string, readonly bundle: string, readonly id: string, readonly logFile: string) {}

  cmd(args: string[], opts: SpawnSyncOptions = {}): SpawnSyncReturns<string> {
    return run('runc', ['--root', this.stateRoot, '--log', this.logFile, ...args], opts);
  }

  private mustRunc(r: SpawnSyncReturns<string>, what: string): void {
    if (r.error || r.status !== 0) {
      let log = '';
      try { log = fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-3).join(' | '); } catch { /* none */ }
      must(r, `${what}${log ? ` [runc log: ${log}]` : ''}`);
    }
  }

  /**
   * `runc run -d`: terminal false, so runc hands its own stdio to the
   * container's init. stdout/stderr are /dev/null; no pipes, or spawnSync
   * would wait for pipes the container keeps open.
   *
   * stdin is a FIFO this process holds open and never writes: busybox init's
   * `::askfirst:-/bin/sh` then blocks on "press Enter", as it does on tsvz's
   * console pty. With /dev/null the shell reads EOF at once and init respawns
   * it every second, and a SIGTERM landing in that 1 s sleep is only acted on
   * when it ends: up to +1 s on every runc stop, which is not runc's cost.
   */
  stdinFd = -1;

  start(): void {
    const stdin = this.stdinFd >= 0 ? this.stdinFd : 'ignore';
    this.mustRunc(this.cmd(['run', '-d', '--bundle', this.bundle, this.id], { stdio: [stdin, 'ignore', 'ignore'] }), 'runc run -d');
  }
  exec(): void { this.mustRunc(this.cmd(['exec', this.id, 'true']), 'runc exec'); }

  status(): string {
    const r = this.cmd(['state', this.id]);
    if (r.status !== 0) return 'gone';
    return (JSON.parse(r.stdout) as { status: string }).status;
  }

  /** Signal init, wait until runc says "stopped", delete: the container is gone. */
  private signalAndDelete(signal: string): void {
    this.mustRunc(this.cmd(['kill', this.id, signal]), `runc kill ${signal}`);
    waitUntil(() => this.status() === 'stopped', 15_000, 'runc container to stop');
    this.mustRunc(this.cmd(['delete', this.id]), 'runc delete');
  }

  stop(): void { this.signalAndDelete('TERM'); }
  kill(): void { this.signalAndDelete('KILL'); }
  destroy(): void { this.cmd(['delete', '--force', this.id]); }
}

// ---------------------------------------------------------------- the runc bundle

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
function containerCaps(): string[] {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapBnd:'));
  const bnd = BigInt(`0x${(line ?? 'CapBnd: 0').split(/\s+/)[1]}`);
  const dropped = new Set(Object.values(DROPPED_CAPABILITIES));
  return CAP_NAMES.filter((name, i) => (bnd >> BigInt(i)) & 1n && !dropped.has(i) && name !== 'CAP_SYS_RESOURCE');
}

interface RuncSpec {
  process: { terminal: boolean; args: string[]; env: string[]; capabilities: Record<string, string[]> };
  root: { path: string; readonly: boolean };
  hostname?: string;
  linux: { namespaces: { type: string }[] };
}

function buildBundle(bundle: string, rootfs: string, hostname: string): void {
  fs.mkdirSync(bundle, { recursive: true });
  must(run('cp', ['-a', rootfs, path.join(bundle, 'rootfs')]), 'cp -a rootfs');
  must(run('runc', ['spec', '--bundle', bundle]), 'runc spec');
  const file = path.join(bundle, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8')) as RuncSpec;
  spec.process.args = ['/sbin/init'];
  spec.process.terminal = false;
  spec.process.env = [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'TERM=linux', 'container=runc',
  ];
  const caps = containerCaps();
  for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient']) spec.process.capabilities[set] = [...caps];
  spec.root = { path: 'rootfs', readonly: false };
  spec.hostname = hostname;
  spec.linux.namespaces = ['pid', 'mount', 'uts', 'ipc', 'network', 'cgroup'].map((type) => ({ type }));
  const text = JSON.stringify(spec, null, 2);
  if (text.includes('CAP_SYS_RESOURCE')) throw new Error('bundle config still names CAP_SYS_RESOURCE');
  fs.writeFileSync(file, text);
}

// ---------------------------------------------------------------- the benchmark

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the lifecycle benchmark needs root');
  if (run('runc', ['--version']).status !== 0) throw new Error('runc is not installed (apt-get install runc)');
  if (!fs.existsSync('/bin/busybox')) throw new Error('/bin/busybox is missing (apt-get install busybox-static)');
  if (!fs.existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is not built (npm run build)');
}

function hostInfo(): Record<string, unknown> {
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

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const opts = parseArgs(argv);
  const scrubbed = opts.inheritEnv ? [] : SCRUBBED_ENV.filter((k) => process.env[k] !== undefined);
  childEnv = { ...process.env };
  for (const k of scrubbed) delete childEnv[k];
  preflight();
  const onSigint = (): void => { interrupted = true; };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-bench-'));
  const tag = path.basename(tmp).slice('tsvz-bench-'.length).toLowerCase();
  const tsvz = new Tsvz(path.join(tmp, 'root'), 'b1');
  const runc = new Runc(path.join(tmp, 'runc-state'), path.join(tmp, 'runc-bundle'), `tsvz-bench-${tag}`, path.join(tmp, 'runc.log'));
  const log = (msg: string): void => { process.stderr.write(`lifecycle: ${msg}\n`); };

  try {
    log(`work dir ${tmp}`);
    tsvz.create();
    buildBundle(runc.bundle, path.join(tsvz.root, 'containers', tsvz.name, 'rootfs'), tsvz.name);
    const fifo = path.join(tmp, 'runc-console-in');
    must(run('mkfifo', [fifo]), 'mkfifo');
    runc.stdinFd = fs.openSync(fifo, 'r+'); // read-write: never blocks, never sees EOF

    const total = opts.warmup + opts.iterations;
    const samples: Record<string, number[]> = {
      tsvzStart: [], tsvzExec: [], tsvzStop: [], runcStart: [], runcExec: [], runcStop: [],
      tsvzKill: [], runcKill: [], tsvzList: [], nodeBare: [],
    };
    const keep = (i: number, key: string, ms: number): void => { if (i >= opts.warmup) samples[key].push(ms); };

    // start / exec / stop, tsvz and runc interleaved so drift hits both alike.
    for (let i = 0; i < total; i++) {
      log(`start/exec/stop ${i < opts.warmup ? 'warm-up' : `${i - opts.warmup + 1}/${opts.iterations}`}`);
      keep(i, 'tsvzStart', timed(() => tsvz.start())); await checkpoint();
      keep(i, 'tsvzExec', timed(() => tsvz.exec())); await checkpoint();
      keep(i, 'tsvzStop', timed(() => tsvz.stop())); await checkpoint();
      keep(i, 'runcStart', timed(() => runc.start())); await checkpoint();
      keep(i, 'runcExec', timed(() => runc.exec())); await checkpoint();
      keep(i, 'runcStop', timed(() => runc.stop())); await checkpoint();
    }

    // kill: the `stop --timeout 0` variant (SIGKILL, wait until gone). Starts are untimed.
    for (let i = 0; i < total; i++) {
      log(`kill ${i < opts.warmup ? 'warm-up' : `${i - opts.warmup + 1}/${opts.iterations}`}`);
      tsvz.start();
      keep(i, 'tsvzKill', timed(() => tsvz.kill())); await checkpoint();
      runc.start();
      keep(i, 'runcKill', timed(() => runc.kill())); await checkpoint();
    }

    // list (one stopped container in the root) against bare node startup.
    log('list');
    for (let i = 0; i < total; i++) {
      keep(i, 'tsvzList', timed(() => tsvz.list()));
      keep(i, 'nodeBare', timed(() => must(run(NODE, ['-e', '0']), 'node -e 0')));
      await checkpoint();
    }

    const row = (operation: string, description: string, t: string, b: string, baselineName: string, target: number): Row => {
      const ts = stats(samples[t]);
      const bs = stats(samples[b]);
      const ratio = Math.round((ts.median / bs.median) * 100) / 100;
      return { operation, description, tsvz: ts, baselineName, baseline: bs, ratio, target, met: ratio <= target };
    };
    const rows: Row[] = [
      row('start', '`tsvz start` vs `runc run -d`', 'tsvzStart', 'runcStart', 'runc', 3),
      row('exec', '`tsvz exec b1 -- true` vs `runc exec ID true`', 'tsvzExec', 'runcExec', 'runc', 3),
      row('stop', '`tsvz stop` vs `runc kill TERM` + wait stopped + `runc delete` (includes busybox init shutdown)', 'tsvzStop', 'runcStop', 'runc', 3),
      row('kill', '`tsvz kill KILL` + wait stopped (`tsvz info --json`) vs `runc kill KILL` + wait stopped + `runc delete`', 'tsvzKill', 'runcKill', 'runc', 3),
      row('list', '`tsvz list` vs `node -e 0`', 'tsvzList', 'nodeBare', 'node -e 0', 1.5),
    ];

    const date = new Date();
    const result = {
      benchmark: 'lifecycle',
      date: date.toISOString(),
      iterations: opts.iterations,
      warmup: opts.warmup,
      unit: 'ms',
      host: hostInfo(),
      envScrubbed: scrubbed,
      rows,
      allMet: rows.every((r) => r.met),
    };
    const outDir = path.join(REPO, 'bench', 'results');
    fs.mkdirSync(outDir, { recursive: true });
    const outFile = path.join(outDir, `lifecycle-${date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
    fs.writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);

    const fmt = (n: number): string => n.toFixed(1);
    const lines = [
      `Lifecycle: tsvz vs runc on the same busybox rootfs (median of ${opts.iterations}, ${opts.warmup} warm-up; ${result.host.runc}, node ${process.version}` +
        `${scrubbed.length ? `; without ${scrubbed.join(', ')}` : ''})`,
      '',
      '| operation | tsvz median ms | runc median ms | ratio | target | met |',
      '| --- | ---: | ---: | ---: | ---: | :---: |',
      ...rows.map((r) => `| ${r.operation}${r.baselineName === 'runc' ? '' : ` (vs ${r.baselineName})`} | ${fmt(r.tsvz.median)} | ${fmt(r.baseline.median)} | ${r.ratio.toFixed(2)}× | ≤ ${r.target}× | ${r.met ? 'yes' : 'NO'} |`),
      '',
      '| operation | tsvz min / p90 ms | baseline min / p90 ms |',
      '| --- | ---: | ---: |',
      ...rows.map((r) => `| ${r.operation} | ${fmt(r.tsvz.min)} / ${fmt(r.tsvz.p90)} | ${fmt(r.baseline.min)} / ${fmt(r.baseline.p90)} |`),
      '',
      `results: ${path.relative(process.cwd(), outFile) || outFile}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return opts.check && !result.allMet ? 1 : 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigint);
    tsvz.destroy();
    runc.destroy();
    if (runc.stdinFd >= 0) fs.closeSync(runc.stdinFd);
    if (opts.keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`lifecycle: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof Interrupted ? 130 : 1);
    },
  );
}
