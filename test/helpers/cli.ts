import { spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Root } from '../../lib/root';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const TSVZ = path.join(REPO, 'bin', 'tsvz');

/** Why a root-only test can't run here, or undefined when it can. */
export function rootSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, cgroups, mounts)';
  if (!fs.existsSync(path.join(REPO, 'native', 'build', 'tsvz-monitor'))) return 'native helpers not built (npm install)';
  return undefined;
}

export interface Result { status: number | null; stdout: string; stderr: string }

/** A throwaway tsvz root under /tmp (tsvz-test-*), with the CLI bound to it. */
export class TestRoot {
  readonly dir: string;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-'));
  }

  run(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Result {
    const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [TSVZ, '--root', this.dir, ...args], {
      encoding: 'utf8',
      input: opts.input ?? '',
      env: { ...process.env, ...opts.env },
      timeout: opts.timeoutMs ?? 60_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Run and insist on success; returns stdout. */
  ok(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
    const r = this.run(args, opts);
    if (r.status !== 0) throw new Error(`tsvz ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /** Start the CLI in the background (for concurrency and SIGKILL tests). */
  spawn(args: string[], env: NodeJS.ProcessEnv = {}) {
    return spawn(process.execPath, [TSVZ, '--root', this.dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  }

  info(name: string): any {
    return JSON.parse(this.ok(['info', name, '--json']));
  }

  /** Destroy every container (even half-made ones) and remove the root. */
  cleanup(): void {
    const dir = path.join(this.dir, 'containers');
    const names = new Set<string>();
    try {
      for (const e of fs.readdirSync(dir)) names.add(e.replace(/^\.creating-(.*)-[0-9a-f]{8}$/, '$1'));
    } catch { /* nothing created */ }
    for (const n of names) this.run(['destroy', '--force', n]);
    // Pools (loop images, zpools, mounts) made under this root, then any loop device still backed by a file here.
    try {
      for (const p of JSON.parse(this.run(['pool', 'list', '--json']).stdout) as { name: string }[]) {
        if (p.name !== 'default') this.run(['pool', 'rm', '--force', p.name]);
      }
    } catch { /* no pools */ }
    for (const line of (spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout ?? '').split('\n')) {
      if (line.includes(this.dir)) spawnSync('losetup', ['-d', line.split(':')[0]], { stdio: 'ignore' });
    }
    spawnSync('umount', ['-R', '-l', this.dir], { stdio: 'ignore' });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Every cgroup directory named after this root's containers still on the host. */
export function leftoverCgroups(rootDir: string): string[] {
  const id = new Root(rootDir).id;
  const found: string[] = [];
  for (const base of fs.readdirSync('/sys/fs/cgroup')) {
    const parent = path.join('/sys/fs/cgroup', base, 'tsvz');
    let entries: string[] = [];
    try { entries = fs.readdirSync(parent); } catch { continue; }
    for (const e of entries) if (e.startsWith(`${id}-`)) found.push(path.join(parent, e));
  }
  return found;
}

/** Monitors still running for this root. */
export function leftoverMonitors(rootDir: string): number[] {
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('tsvz-monitor') && (argv[argv.indexOf('--dir') + 1] ?? '').startsWith(rootDir + '/')) pids.push(Number(e));
    } catch { /* gone */ }
  }
  return pids;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until `cond` holds or `ms` passes. */
export async function eventually(cond: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}
