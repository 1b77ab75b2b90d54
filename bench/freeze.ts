/**
 * Freeze benchmark: how long the kernel takes to freeze a container of 100
 * sleeping processes (plus its init), with the v1 freezer (freezer.state) and
 * the v2 one (cgroup.freeze) of this hybrid host.
 *
 * The figure is what `tsvz freeze` prints: from the write to the control file
 * until the kernel reports the whole cgroup frozen (checkpoint/freezer.ts
 * freeze()), measured in-process, without node start-up. Each iteration
 * freezes and thaws once with each freezer. Target: median < 50 ms.
 *
 * Writes bench/results/freeze-<ISO date>.json and prints a markdown table.
 * Needs root and /bin/busybox; uses only local resources.
 *
 * Usage: node dist/bench/freeze.js [--iterations N] [--warmup N] [--procs N] [--check] [--keep]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeze, freezerFor, FreezerKind, thaw } from '../runtime/cgroups/freezer';
import { ContainerCgroups } from '../runtime/cgroups';
import { Root } from '../lib/root';
import { sleepSync } from './common';
import { runAsScript, stats, Stats } from './common';

const REPO = path.resolve(__dirname, '..', '..');
const TSVZ_BIN = path.join(REPO, 'bin', 'tsvz');
const TARGET_MS = 50;
const KINDS: FreezerKind[] = ['v1', 'v2'];

interface Options { iterations: number; warmup: number; procs: number; check: boolean; keep: boolean }

function parseArgs(argv: string[]): Options {
  const o: Options = { iterations: 10, warmup: 1, procs: 100, check: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--iterations' || a === '-n') o.iterations = Math.max(1, num());
    else if (a === '--warmup') o.warmup = num();
    else if (a === '--procs') o.procs = Math.max(1, num());
    else if (a === '--check') o.check = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: freeze [--iterations N] [--warmup N] [--procs N] [--check] [--keep]\n');
      process.exit(0);
    } else throw new Error(`unknown argument "${a}"`);
  }
  return o;
}

function tsvz(root: string, args: string[]): string {
  const r = spawnSync(process.execPath, [TSVZ_BIN, '--root', root, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tsvz ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim()}`);
  return r.stdout;
}

function waitUntil(cond: () => boolean, ms: number, what: string): void {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
    sleepSync(20);
  }
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const opts = parseArgs(argv);
  if (process.getuid?.() !== 0) throw new Error('the freeze benchmark needs root');
  let interrupted = false;
  const onSignal = (): void => { interrupted = true; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-bench-'));
  const root = path.join(tmp, 'root');
  const log = (msg: string): void => { process.stderr.write(`freeze: ${msg}\n`); };
  try {
    log(`work dir ${tmp}; starting a container with ${opts.procs} sleeping processes`);
    tsvz(root, ['create', 'f1', '--init', `sh -c "for i in $(seq ${opts.procs}); do sleep 100000 & done; wait"`]);
    tsvz(root, ['start', 'f1']);
    const cg = new ContainerCgroups(new Root(root).containerKey('f1'));
    waitUntil(() => cg.pids().length > opts.procs, 10_000, `${opts.procs + 1} processes in the cgroup`);

    const samples: Record<FreezerKind, number[]> = { v1: [], v2: [] };
    for (let i = 0; i < opts.warmup + opts.iterations; i++) {
      for (const kind of KINDS) {
        const f = freezerFor(cg, kind);
        const ms = await freeze(f);
        await thaw(f);
        if (i >= opts.warmup) samples[kind].push(ms);
        sleepSync(20); // let the thawed tasks settle back to sleep
      }
      await new Promise((r) => setImmediate(r));
      if (interrupted) throw new Error('interrupted');
    }

    const rows = KINDS.map((kind) => {
      const s: Stats = stats(samples[kind]);
      return { freezer: kind, ...s, met: s.median < TARGET_MS };
    });
    const date = new Date();
    const result = {
      benchmark: 'freeze',
      date: date.toISOString(),
      processes: cg.pids().length,
      iterations: opts.iterations,
      warmup: opts.warmup,
      unit: 'ms',
      targetMs: TARGET_MS,
      host: { node: process.version, kernel: `${os.type()} ${os.release()}`, cpus: os.cpus().length, cgroups: cg.mode },
      rows,
      allMet: rows.every((r) => r.met),
    };
    const outDir = path.join(REPO, 'bench', 'results');
    fs.mkdirSync(outDir, { recursive: true });
    const outFile = path.join(outDir, `freeze-${date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
    fs.writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);

    const fmt = (n: number): string => n.toFixed(2);
    process.stdout.write([
      JSON.stringify({ benchmark: 'freeze', processes: result.processes, v1: rows[0].median, v2: rows[1].median, unit: 'ms' }),
      '',
      `Freeze of ${result.processes} processes (median of ${opts.iterations}, ${opts.warmup} warm-up; ${result.host.kernel}, ${cg.mode} cgroups)`,
      '',
      '| freezer | median ms | min ms | p90 ms | target | met |',
      '| --- | ---: | ---: | ---: | ---: | :---: |',
      ...rows.map((r) => `| ${r.freezer} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.p90)} | < ${TARGET_MS} ms | ${r.met ? 'yes' : 'NO'} |`),
      '',
      `results: ${path.relative(process.cwd(), outFile) || outFile}`,
      '',
    ].join('\n'));
    return opts.check && !result.allMet ? 1 : 0;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    spawnSync(process.execPath, [TSVZ_BIN, '--root', root, 'destroy', '--force', 'f1'], { stdio: 'ignore' });
    if (opts.keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) runAsScript('freeze', () => main());
