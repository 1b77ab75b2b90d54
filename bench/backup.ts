/**
 * Backup shipping benchmark: an incremental send of a small change to a
 * large container, btrfs and zfs, through `tsvz schedule run` (snapshot,
 * send over the daemons' mutual TLS, checksummed receive in the other
 * root's backup store, prune on both sides) against the bare tool.
 *
 *   driver  tsvz                             bare tool (its own snapshots of the same volume)
 *   btrfs   `tsvz schedule run NAME s`        `btrfs subvolume snapshot -r` + `btrfs send -p PREV SNAP | btrfs receive DIR`
 *   zfs     `tsvz schedule run NAME s`        `zfs snapshot` + `zfs send -i PREV SNAP | zfs recv -F DS`
 *
 * Set-up per driver: two roots under one work directory, A (the source,
 * its own pool of --pool-size) and B (a daemon on 127.0.0.1, its backup
 * store a pool of its own, `--backup-pool`); A enrolled with B (`trust
 * token`, `remote add`). A container on A's pool whose rootfs holds
 * --size-mib of /dev/urandom data in files of 64 MiB, and a schedule
 * `--to b --keep last=3` that the daemon never fires (a yearly cron); the
 * first `schedule run` sends the whole tree (full, untimed in the table but
 * its bytes reported); the bare tool snapshots the volume too and receives
 * that in full (into B's pool, beside the store), so both have a base.
 *
 * Each iteration rewrites --change-pct of the data (whole 1 MiB blocks at
 * offsets spread over the files, new random bytes), syncs, then times
 * `tsvz schedule run` (node start-up, the snapshot, the send and the receive
 * on B, both prunes) and the bare tool's snapshot and send from its
 * previous one. The bare tool pipes locally: no TLS, no
 * network, no checksum, so it is a lower bound on "the same link".
 *
 * Targets (from the issue):
 *   bytes on the wire ≤ 1.2 × the changed data (tsvz's bytes shipped: the
 *     stream as the store received it);
 *   tsvz's time ≤ 1.2 × the bare tool's + 100 ms (medians).
 * A scheduled run's overhead in the daemon over the bare snapshot tool is
 * not measured here.
 *
 * Clean-up (in finally, also on Ctrl-C): the daemon, every container, the
 * bare tool's copies, both pools (`pool rm --force`), the work directory;
 * then `zpool list` and `losetup -a` are checked for anything of this run.
 *
 * Usage: node dist/bench/backup.js [--iterations N] [--warmup N] [--drivers btrfs,zfs]
 *            [--size-mib 2048] [--change-pct 1] [--pool-size 6G] [--check] [--keep] [--inherit-env]
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import {
  configureChildEnv, currentChildEnv, hostInfo, intArg, must, NODE, parseCommonArgs, pollInterrupt, round, run,
  runAsScript, stats, Stats, timed, TSVZ_BIN, waitUntil, watchSignals, writeResult,
} from './common';

type Driver = 'btrfs' | 'zfs';
const ALL: Driver[] = ['btrfs', 'zfs'];
const BYTES_TARGET = 1.2;
const TIME_RATIO_TARGET = 1.2;
const TIME_SLACK_MS = 100;
const MiB = 1 << 20;
const FILE_MIB = 64;
const OP_TIMEOUT = 900_000;

interface Options {
  iterations: number; warmup: number; check: boolean; keep: boolean; inheritEnv: boolean;
  drivers: Driver[]; sizeMib: number; changePct: number; poolSize: string;
}

const USAGE = 'usage: backup [--iterations N] [--warmup N] [--drivers btrfs,zfs] [--size-mib 2048] [--change-pct 1] [--pool-size 6G] [--check] [--keep] [--inherit-env]';

function parseArgs(argv: string[]): Options {
  return parseCommonArgs<Pick<Options, 'drivers' | 'sizeMib' | 'changePct' | 'poolSize'>>(
    argv,
    { iterations: 5, warmup: 1, check: false, keep: false, inheritEnv: false, drivers: ALL, sizeMib: 2048, changePct: 1, poolSize: '6G' },
    USAGE,
    (o, arg, next) => {
      if (arg === '--drivers') {
        const ds = next().split(',').map((s) => s.trim());
        for (const d of ds) if (!ALL.includes(d as Driver)) throw new Error(`--drivers: unknown driver "${d}" (${ALL.join(', ')})`);
        o.drivers = ds as Driver[];
      } else if (arg === '--size-mib') o.sizeMib = Math.max(FILE_MIB, intArg(arg, next()));
      else if (arg === '--change-pct') {
        o.changePct = Number(next());
        if (!(o.changePct > 0 && o.changePct <= 100)) throw new Error('--change-pct needs a number in (0, 100]');
      } else if (arg === '--pool-size') {
        o.poolSize = next();
        if (!/^\d+[MGT]$/.test(o.poolSize)) throw new Error('--pool-size needs a size like 6G');
      } else return false;
      return true;
    },
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

class Side {
  constructor(readonly dir: string) { fs.mkdirSync(dir, { recursive: true }); }
  tsvz(args: string[], what = `tsvz ${args.join(' ')}`): string {
    return must(run(NODE, [TSVZ_BIN, '--root', this.dir, ...args], { timeout: OP_TIMEOUT }), what).stdout;
  }
  poolRecord(name: string): { mountpoint?: string; dataset?: string } {
    const file = JSON.parse(fs.readFileSync(path.join(this.dir, 'pools.json'), 'utf8')) as { pools: Record<string, { record: Record<string, string> }> };
    return file.pools[name].record;
  }
}

interface DriverResult {
  driver: Driver;
  sizeMib: number;
  changedBytes: number;
  fullBytes: number;
  tsvzMs: Stats;
  bareMs: Stats;
  shippedBytes: Stats;
  bytesRatio: number;
  timeOk: boolean;
  bytesOk: boolean;
}

/** Rewrite `mib` blocks of 1 MiB spread over the data files: what changed, in bytes. */
function change(dataDir: string, files: number, mib: number): number {
  const total = files * FILE_MIB;
  const step = Math.max(1, Math.floor(total / mib));
  for (let k = 0; k < mib; k++) {
    const block = (k * step + crypto.randomInt(step)) % total;
    const fd = fs.openSync(path.join(dataDir, `f${Math.floor(block / FILE_MIB)}`), 'r+');
    fs.writeSync(fd, crypto.randomBytes(MiB), 0, MiB, (block % FILE_MIB) * MiB);
    fs.closeSync(fd);
  }
  must(run('sync', []), 'sync');
  return mib * MiB;
}

function snapshotsOf(a: Side, name: string): { name: string; handle: string }[] {
  return JSON.parse(a.tsvz(['snapshot', 'list', name, '--json'])) as { name: string; handle: string }[];
}

async function benchDriver(driver: Driver, work: string, opts: Options, cleanups: (() => void)[]): Promise<DriverResult> {
  const id = crypto.randomBytes(3).toString('hex');
  const a = new Side(path.join(work, `${driver}-a`));
  const b = new Side(path.join(work, `${driver}-b`));
  const srcPool = `tsvz-bb${id}a`;
  const storePool = `tsvz-bb${id}b`;
  const name = `tsvz-bb${id}`;
  cleanups.push(() => { run(NODE, [TSVZ_BIN, '--root', b.dir, 'pool', 'rm', '--force', storePool]); });
  b.tsvz(['pool', 'create', storePool, '--driver', driver, '--size', opts.poolSize]);
  cleanups.push(() => {
    // The bare snapshots first: a volume with snapshots tsvz did not make would keep destroy from removing it.
    if (driver === 'btrfs') {
      const dir = path.join(a.poolRecord(srcPool).mountpoint ?? '/nonexistent', `bench-bare-${id}`);
      for (const e of fs.existsSync(dir) ? fs.readdirSync(dir) : []) run('btrfs', ['subvolume', 'delete', path.join(dir, e)]);
    } else {
      for (const l of (run('zfs', ['list', '-H', '-t', 'snapshot', '-o', 'name']).stdout ?? '').split('\n')) if (l.includes(`@bench-bare-`) && l.includes(srcPool)) run('zfs', ['destroy', l]);
    }
    run(NODE, [TSVZ_BIN, '--root', a.dir, 'destroy', '--force', name]);
    run(NODE, [TSVZ_BIN, '--root', a.dir, 'pool', 'rm', '--force', srcPool]);
  });
  a.tsvz(['pool', 'create', srcPool, '--driver', driver, '--size', opts.poolSize]);

  const port = await freePort();
  const log = path.join(work, `${driver}-daemon.log`);
  const fd = fs.openSync(log, 'a');
  const daemon = spawn(NODE, [TSVZ_BIN, '--root', b.dir, 'daemon', '--listen', `127.0.0.1:${port}`, '--backup-pool', storePool], { stdio: ['ignore', 'ignore', fd], env: currentChildEnv() });
  fs.closeSync(fd);
  cleanups.unshift(() => { daemon.kill('SIGKILL'); });
  waitUntil(() => fs.readFileSync(log, 'utf8').includes('"event":"started"') || daemon.exitCode !== null, 30_000, 'the daemon to start');
  if (daemon.exitCode !== null) throw new Error(`the daemon did not start: ${fs.readFileSync(log, 'utf8')}`);
  const token = b.tsvz(['trust', 'token', '--expires', '10m']).trim();
  a.tsvz(['remote', 'add', 'b', `127.0.0.1:${port}`, '--token', token, '--as', 'a']);

  a.tsvz(['create', name, '--pool', srcPool]);
  const data = path.join(a.dir, 'containers', name, 'rootfs', 'bench-data');
  fs.mkdirSync(data);
  const files = Math.ceil(opts.sizeMib / FILE_MIB);
  for (let i = 0; i < files; i++) {
    const out = fs.openSync(path.join(data, `f${i}`), 'w');
    for (let m = 0; m < FILE_MIB; m++) fs.writeSync(out, crypto.randomBytes(MiB));
    fs.closeSync(out);
    await pollInterrupt();
  }
  must(run('sync', []), 'sync');
  a.tsvz(['schedule', 'add', name, 's', '--cron', '0 3 1 1 *', '--keep', 'last=3', '--to', 'b', '--tz', 'UTC']);
  const shipped = (out: string) => Number(/\((\d+) bytes shipped\)/.exec(out)?.[1] ?? NaN);
  const fullBytes = shipped(a.tsvz(['schedule', 'run', name, 's']));

  // The bare tool's own copy, beside the store in B's pool, from the same first snapshot.
  const rec = b.poolRecord(storePool);
  const bareTarget = driver === 'btrfs' ? path.join(rec.mountpoint!, `bench-bare-${id}`) : `${rec.dataset}/bench-bare-${id}`;
  if (driver === 'btrfs') fs.mkdirSync(bareTarget);
  let received = 0;
  const bare = (parent: string | undefined, snap: string) => {
    // btrfs names a received subvolume after the one sent (always "rootfs"): one directory each.
    const into = driver === 'btrfs' ? path.join(bareTarget, String(received++)) : bareTarget;
    if (driver === 'btrfs') fs.mkdirSync(into);
    const cmd = driver === 'btrfs'
      ? `btrfs send -q ${parent ? `-p '${parent}' ` : ''}'${snap}' | btrfs receive -q '${into}'`
      : `zfs send ${parent ? `-i '${parent}' ` : ''}'${snap}' | zfs recv -F -u '${into}'`;
    must(run('bash', ['-c', `set -o pipefail; ${cmd}`], { timeout: OP_TIMEOUT }), cmd);
  };
  // The bare chain: snapshots of its own of the same volume, taken right after tsvz's.
  const vol = snapshotsOf(a, name).at(-1)!.handle;
  const srcRec = a.poolRecord(srcPool);
  const bareSnaps = driver === 'btrfs' ? path.join(srcRec.mountpoint!, `bench-bare-${id}`) : '';
  if (driver === 'btrfs') fs.mkdirSync(bareSnaps);
  const volume = driver === 'btrfs' ? fs.realpathSync(path.join(a.dir, 'containers', name, 'rootfs')) : vol.slice(0, vol.indexOf('@'));
  let n = 0;
  const bareSnapshot = (): string => {
    const snap = driver === 'btrfs' ? path.join(bareSnaps, `s${n++}`) : `${volume}@bench-bare-${n++}`;
    if (driver === 'btrfs') must(run('btrfs', ['subvolume', 'snapshot', '-r', volume, snap]), 'btrfs subvolume snapshot');
    else must(run('zfs', ['snapshot', snap]), 'zfs snapshot');
    return snap;
  };
  let prev = bareSnapshot();
  bare(undefined, prev);

  const changeMib = Math.max(1, Math.round((opts.sizeMib * opts.changePct) / 100));
  const tsvzMs: number[] = [];
  const bareMs: number[] = [];
  const bytes: number[] = [];
  let changed = 0;
  for (let i = 0; i < opts.warmup + opts.iterations; i++) {
    await pollInterrupt();
    changed = change(data, files, changeMib);
    let out = '';
    const t = timed(() => { out = a.tsvz(['schedule', 'run', name, 's']); });
    must(run('sync', []), 'sync');
    let snap = '';
    const bt = timed(() => { snap = bareSnapshot(); bare(prev, snap); });
    prev = snap;
    if (i < opts.warmup) continue;
    tsvzMs.push(t);
    bareMs.push(bt);
    bytes.push(shipped(out));
  }
  const tsvz = stats(tsvzMs);
  const bareStats = stats(bareMs);
  const shippedStats = stats(bytes);
  return {
    driver, sizeMib: files * FILE_MIB, changedBytes: changed, fullBytes,
    tsvzMs: tsvz, bareMs: bareStats, shippedBytes: shippedStats,
    bytesRatio: shippedStats.median / changed,
    bytesOk: shippedStats.median <= BYTES_TARGET * changed,
    timeOk: tsvz.median <= TIME_RATIO_TARGET * bareStats.median + TIME_SLACK_MS,
  };
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('needs root (pools, loop devices)');
  configureChildEnv({ inherit: opts.inheritEnv });
  const stopWatching = watchSignals();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-bench-backup-'));
  const results: DriverResult[] = [];
  const skipped: { driver: Driver; why: string }[] = [];
  const date = new Date();
  try {
    for (const driver of opts.drivers) {
      const tool = driver === 'btrfs' ? ['mkfs.btrfs', '-V'] : ['zpool', 'list'];
      if (run(tool[0], tool.slice(1)).status !== 0) { skipped.push({ driver, why: `${tool[0]} not usable` }); continue; }
      const cleanups: (() => void)[] = [];
      try {
        results.push(await benchDriver(driver, work, opts, cleanups));
      } finally {
        if (!opts.keep) for (const c of cleanups) c();
      }
    }
  } finally {
    stopWatching();
    if (!opts.keep) fs.rmSync(work, { recursive: true, force: true });
  }
  const leftZpools = run('zpool', ['list', '-H', '-o', 'name']).stdout?.split('\n').filter((n) => n.startsWith('tsvz-bb')) ?? [];
  const leftLoops = run('losetup', ['-a']).stdout?.split('\n').filter((l) => l.includes(work)) ?? [];
  if (!opts.keep && (leftZpools.length > 0 || leftLoops.length > 0)) throw new Error(`left behind: ${[...leftZpools, ...leftLoops].join(', ')}`);

  const mib = (n: number) => `${round(n / MiB)} MiB`;
  const lines = [
    '| driver | data | changed | full send | incremental shipped (median) | bytes / changed | tsvz run (median) | bare snapshot, send, receive (median) | targets |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.driver} | ${r.sizeMib} MiB | ${mib(r.changedBytes)} | ${mib(r.fullBytes)} | ${mib(r.shippedBytes.median)} | ${round(r.bytesRatio)} (≤ ${BYTES_TARGET}: ${r.bytesOk ? 'met' : 'missed'}) | ${round(r.tsvzMs.median)} ms | ${round(r.bareMs.median)} ms | time ≤ ${TIME_RATIO_TARGET}× bare + ${TIME_SLACK_MS} ms: ${r.timeOk ? 'met' : 'missed'} |`),
    ...skipped.map((s) => `| ${s.driver} | skipped: ${s.why} | | | | | | | |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const allMet = results.every((r) => r.bytesOk && r.timeOk);
  const outFile = writeResult('backup', date, { date: date.toISOString(), options: opts, host: hostInfo(), results, skipped, allMet });
  process.stdout.write(`\nwritten to ${outFile}\n`);
  return opts.check && !allMet ? 1 : 0;
}

if (require.main === module) runAsScript('backup', main);
