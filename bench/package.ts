/**
 * Release artifact benchmark: the CLI from the artifact (`npm run package`,
 * unpacked: one executable holding Node and the bundle) against the same
 * CLI from the checkout (`node bin/tsvz`, the bundle read from dist/), on
 * the same Node.
 *
 *   list : `tsvz list`, one stopped busybox container in the root
 *   start: `tsvz start b1` (each followed by an untimed `stop --timeout 0`)
 *   list, no code cache: `tsvz list` with the code caches removed before
 *          each run (a first run, or an install the user cannot write to);
 *          reported, no target
 *
 * Each side has a root and a container of its own; the two alternate, so
 * drift hits both alike. Median, min and p90 over N iterations after the
 * warm-ups (the code caches settle over a command's first runs:
 * cli/launch.ts). Target (from the issue): the artifact no slower than the
 * checkout, ≤ 1.0× for list and start.
 *
 * Writes bench/results/package-<ISO date>.json and prints a markdown table.
 * Needs root, Node 24 (the artifact carries it and is built with it) and
 * /bin/busybox; builds the artifact itself (scripts/package --no-build).
 *
 * Usage: node dist/bench/package.js [--iterations N] [--warmup N] [--check] [--keep] [--inherit-env]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  configureChildEnv, hostInfo, must, NODE, parseCommonArgs, pollInterrupt, REPO, run, runAsScript, stats, Stats,
  timed, TSVZ_BIN, watchSignals, writeResult,
} from './common';

const USAGE = 'usage: package [--iterations N] [--warmup N] [--check] [--keep] [--inherit-env]';

interface Row {
  operation: string;
  artifact: Stats;
  checkout: Stats;
  ratio: number;
  target?: number;
  met?: boolean;
}

/** One way of running the CLI, on a root of its own. */
class Cli {
  constructor(readonly cmd: string, readonly prefix: string[], readonly root: string, readonly cacheDir: string) {}
  run(args: string[]): void {
    must(run(this.cmd, [...this.prefix, '--root', this.root, ...args]), `${path.basename(this.cmd)} ${args.join(' ')}`);
  }
  destroy(): void { run(this.cmd, [...this.prefix, '--root', this.root, 'destroy', '--force', 'b1']); }
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the package benchmark needs root');
  if (!process.version.startsWith('v24.')) throw new Error(`the artifact carries Node 24 and is built with it; this is ${process.version} (run through npm run bench)`);
  if (!fs.existsSync('/bin/busybox')) throw new Error('/bin/busybox is missing (apt-get install busybox-static)');
  if (!fs.existsSync(path.join(REPO, 'dist', 'bundle', 'tsvz.js'))) throw new Error('dist/ is not built (npm run build)');
}

const MiB = (file: string): number => Math.round((fs.statSync(file).size / 1048576) * 10) / 10;

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const opts = parseCommonArgs(argv, { iterations: 10, warmup: 3, check: false, keep: false, inheritEnv: false }, USAGE);
  const scrubbed = configureChildEnv({ inherit: opts.inheritEnv });
  preflight();
  const unwatch = watchSignals();
  const log = (msg: string): void => { process.stderr.write(`package: ${msg}\n`); };

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-bench-'));
  const clis: Cli[] = [];
  try {
    log(`work dir ${tmp}; building the artifact`);
    const release = path.join(tmp, 'release');
    must(run('bash', [path.join(REPO, 'scripts', 'package'), '--no-build', '--out', release], { timeout: 300_000 }), 'scripts/package');
    const tarball = path.join(release, fs.readdirSync(release).find((f) => f.endsWith('.tar.gz'))!);
    const unpacked = path.join(tmp, 'unpacked');
    fs.mkdirSync(unpacked);
    must(run('tar', ['-C', unpacked, '-xzf', tarball]), 'tar -x');
    const dir = path.join(unpacked, path.basename(tarball, '.tar.gz'));
    const exe = path.join(dir, 'tsvz');

    const artifact = new Cli(exe, [], path.join(tmp, 'root-artifact'), path.join(dir, 'cache'));
    const checkout = new Cli(NODE, [TSVZ_BIN], path.join(tmp, 'root-checkout'), path.join(REPO, 'dist', 'bundle', 'cache', process.version));
    clis.push(artifact, checkout);
    for (const cli of clis) cli.run(['create', 'b1', '--template', 'busybox', '--memory', '64M']);

    const total = opts.warmup + opts.iterations;
    const samples: Record<string, number[]> = {};
    const keep = (i: number, key: string, ms: number): void => {
      if (i >= opts.warmup) (samples[key] ??= []).push(ms);
    };
    const sides = [['artifact', artifact], ['checkout', checkout]] as const;

    for (let i = 0; i < total; i++) {
      log(`start/list ${i < opts.warmup ? 'warm-up' : `${i - opts.warmup + 1}/${opts.iterations}`}`);
      for (const [name, cli] of sides) {
        keep(i, `${name}Start`, timed(() => cli.run(['start', 'b1'])));
        cli.run(['stop', '--timeout', '0', 'b1']);
        await pollInterrupt();
      }
      for (const [name, cli] of sides) {
        keep(i, `${name}List`, timed(() => cli.run(['list'])));
        await pollInterrupt();
      }
    }
    // Last, as it throws the caches away: each side's list as a first run.
    for (let i = 0; i < total; i++) {
      for (const [name, cli] of sides) {
        fs.rmSync(cli.cacheDir, { recursive: true, force: true });
        keep(i, `${name}ListCold`, timed(() => cli.run(['list'])));
        await pollInterrupt();
      }
    }
    for (const cli of clis) fs.rmSync(cli.cacheDir, { recursive: true, force: true });

    const row = (operation: string, key: string, target?: number): Row => {
      const a = stats(samples[`artifact${key}`]);
      const c = stats(samples[`checkout${key}`]);
      const exact = a.median / c.median;
      return { operation, artifact: a, checkout: c, ratio: Math.round(exact * 100) / 100, target, met: target === undefined ? undefined : exact <= target };
    };
    const rows = [row('list', 'List', 1), row('start', 'Start', 1), row('list, no code cache', 'ListCold')];

    const date = new Date();
    const result = {
      benchmark: 'package',
      date: date.toISOString(),
      iterations: opts.iterations,
      warmup: opts.warmup,
      unit: 'ms',
      host: hostInfo(),
      envScrubbed: scrubbed,
      sizes: { tarballMiB: MiB(tarball), executableMiB: MiB(exe) },
      rows,
      allMet: rows.every((r) => r.met !== false),
    };
    const outFile = writeResult('package', date, result);

    const fmt = (n: number): string => n.toFixed(1);
    const lines = [
      `Release artifact vs checkout (median of ${opts.iterations}, ${opts.warmup} warm-up; node ${process.version} on both` +
        `${scrubbed.length ? `; without ${scrubbed.join(', ')}` : ''}; ` +
        `${path.basename(tarball)} ${result.sizes.tarballMiB} MiB, its tsvz ${result.sizes.executableMiB} MiB)`,
      '',
      '| operation | artifact median ms | `node bin/tsvz` median ms | ratio | target | met |',
      '| --- | ---: | ---: | ---: | ---: | :---: |',
      ...rows.map((r) => `| ${r.operation} | ${fmt(r.artifact.median)} | ${fmt(r.checkout.median)} | ${r.ratio.toFixed(2)}× | ` +
        `${r.target === undefined ? '–' : `≤ ${r.target.toFixed(1)}×`} | ${r.met === undefined ? '–' : r.met ? 'yes' : 'NO'} |`),
      '',
      '| operation | artifact min / p90 ms | checkout min / p90 ms |',
      '| --- | ---: | ---: |',
      ...rows.map((r) => `| ${r.operation} | ${fmt(r.artifact.min)} / ${fmt(r.artifact.p90)} | ${fmt(r.checkout.min)} / ${fmt(r.checkout.p90)} |`),
      '',
      `results: ${path.relative(process.cwd(), outFile) || outFile}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return opts.check && !result.allMet ? 1 : 0;
  } finally {
    unwatch();
    for (const cli of clis) cli.destroy();
    if (opts.keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) runAsScript('package', () => main());
