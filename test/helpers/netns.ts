import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TSVZ } from './cli';

/**
 * Hosts for tests: each a network namespace (tsvz-<id>-<name>) with an
 * address in 198.18.0.0/15 on one private segment (a bridge in a namespace
 * of its own), its own tsvz root, and its own `tsvz daemon` process. The
 * daemons and CLIs join only the network namespace (nsenter --net): mounts
 * and cgroups stay the host's, as on a real host. Nothing here sends
 * traffic anywhere but these addresses and the namespaces' loopbacks.
 */

const SUBNET = '198.18.0';
/** Where hosts with ownMounts keep their mount namespaces' files. */
const MOUNT_NS_DIR = '/run/tsvz-test-mnt';

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

export interface Result { status: number | null; stdout: string; stderr: string }

export class TestHost {
  readonly dir: string;
  daemon?: ChildProcess;
  /**
   * The daemon's stderr goes to a file, not a pipe: a daemon whose pipe is
   * full while the test sits in a spawnSync would block on its log.
   */
  readonly logFile: string;
  private logStart = 0;

  constructor(readonly name: string, readonly netns: string, readonly address: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `tsvz-test-${name}-`));
    this.logFile = path.join(this.dir, 'daemon-stderr.log');
  }

  /** Everything the current daemon wrote to stderr (its JSON log lines). */
  get daemonLog(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').slice(this.logStart);
    } catch {
      return '';
    }
  }

  get daemonAddress(): string {
    return `${this.address}:7443`;
  }

  /** This host's own mount namespace (ownMounts), bound to a file under MOUNT_NS_DIR. */
  mountNs?: string;

  /** argv that runs `cmd` inside this host's network namespace (and mount namespace, when it has one). */
  inside(cmd: string[]): string[] {
    return ['nsenter', `--net=/run/netns/${this.netns}`, ...(this.mountNs ? [`--mount=${this.mountNs}`] : []), '--', ...cmd];
  }

  /**
   * A mount namespace for every process of this host, whose /sys is a sysfs
   * mounted from inside its network namespace (so /sys/class/net shows this
   * host's interfaces, as on a host of its own), with the machine's cgroup
   * mounts moved onto it. nsenter --net alone leaves sysfs showing the
   * machine's interfaces, so a bridge made in the namespace would look
   * missing to tsvz. A whole sysfs, not binds over parts of it: a container
   * in a user namespace may mount sysfs only where the one it sees hides
   * nothing.
   */
  makeMountNs(): void {
    fs.mkdirSync(MOUNT_NS_DIR, { recursive: true });
    const file = path.join(MOUNT_NS_DIR, this.netns);
    const cg = `${file}.cgroup`;
    fs.writeFileSync(file, '');
    fs.mkdirSync(cg, { recursive: true });
    const script = [
      `mount --rbind /sys/fs/cgroup ${cg}`,
      'mount -t sysfs sysfs /sys',
      `mount --rbind ${cg} /sys/fs/cgroup`,
      `umount -l ${cg}`,
    ].join(' && ');
    const r = spawnSync('unshare', [`--mount=${file}`, '--propagation', 'private', 'nsenter', `--net=/run/netns/${this.netns}`, '--', 'sh', '-c', script], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${this.name}: cannot make its mount namespace: ${r.stderr}`);
    this.mountNs = file;
  }

  run(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Result {
    const [cmd, ...rest] = this.inside([process.execPath, TSVZ, '--root', this.dir, ...args]);
    const r = spawnSync(cmd, rest, { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, input: opts.input ?? '' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  ok(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
    const r = this.run(args, opts);
    if (r.status !== 0) throw new Error(`[${this.name}] tsvz ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /** The CLI in the background (streams, concurrency, kills); cleanup kills what still runs. */
  spawn(args: string[], env: NodeJS.ProcessEnv = {}, stderr: 'pipe' | number = 'pipe'): ChildProcess {
    const [cmd, ...rest] = this.inside([process.execPath, TSVZ, '--root', this.dir, ...args]);
    const p = spawn(cmd, rest, { stdio: ['ignore', 'pipe', stderr], env: { ...process.env, ...env } });
    this.spawned.add(p);
    p.on('exit', () => this.spawned.delete(p));
    return p;
  }

  private readonly spawned = new Set<ChildProcess>();

  /** Any program inside the namespace, to completion. */
  exec(cmd: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; replaceEnv?: boolean } = {}): Result {
    const [c, ...rest] = this.inside(cmd);
    const env = opts.replaceEnv ? opts.env : { ...process.env, ...opts.env };
    const r = spawnSync(c, rest, { encoding: 'utf8', env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Start `tsvz daemon` on ADDRESS:7443 (metrics on the namespace's 127.0.0.1:9443); resolves once it listens. */
  async startDaemon(extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<void> {
    if (this.daemon) throw new Error(`${this.name}: a daemon runs already`);
    try { this.logStart = fs.statSync(this.logFile).size; } catch { this.logStart = 0; }
    const fd = fs.openSync(this.logFile, 'a');
    const p = this.spawn(['daemon', '--listen', this.daemonAddress, '--metrics', '127.0.0.1:9443', ...extra], env, fd);
    fs.closeSync(fd);
    this.daemon = p;
    p.on('exit', () => { if (this.daemon === p) this.daemon = undefined; });
    const deadline = Date.now() + 30_000;
    while (!this.daemonLog.includes('"event":"started"')) {
      if (p.exitCode !== null || Date.now() > deadline) throw new Error(`${this.name}: the daemon did not start: ${this.daemonLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stop the daemon (SIGTERM: drains) and wait for it; its exit code. */
  async stopDaemon(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.daemon;
    if (!p) return null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill(signal);
    const code = await exited;
    this.daemon = undefined;
    return code;
  }

  /** Destroy what the root holds and remove it. */
  cleanup(): void {
    // A test that failed midway may leave a CLI paused at a fault point, holding its container's lock.
    for (const p of this.spawned) p.kill('SIGKILL');
    if (this.daemon) this.daemon.kill('SIGKILL');
    if (this.mountNs) {
      // Its containers are destroyed from inside: their networks are this host's.
      const containers = path.join(this.dir, 'containers');
      let names: string[] = [];
      try { names = fs.readdirSync(containers).filter((n) => !n.startsWith('.')); } catch { /* none */ }
      for (const n of names) {
        const [cmd, ...args] = this.inside([process.execPath, TSVZ, '--root', this.dir, 'destroy', '--force', n]);
        spawnSync(cmd, args, { stdio: 'ignore' });
      }
    }
    const containers = path.join(this.dir, 'containers');
    let names: string[] = [];
    try { names = fs.readdirSync(containers).map((e) => e.replace(/^\.creating-(.*)-[0-9a-f]{8}$/, '$1')); } catch { /* none */ }
    for (const n of new Set(names)) spawnSync(process.execPath, [TSVZ, '--root', this.dir, 'destroy', '--force', n], { stdio: 'ignore' });
    spawnSync('umount', ['-R', '-l', this.dir], { stdio: 'ignore' });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A set of hosts on one segment; remove() undoes everything (call it in an after hook). */
export class TestNetwork {
  readonly id = `${process.pid.toString(16)}${Math.floor(Math.random() * 0xfff).toString(16)}`.slice(-6);
  readonly hosts: TestHost[] = [];
  private readonly switchNs = `tsvz-${this.id}-sw`;
  private made = false;

  /** Why these tests cannot run here, or undefined. */
  static skipReason(): string | undefined {
    if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
    if (spawnSync('nsenter', ['--version']).status !== 0) return 'nsenter (util-linux) missing';
    if (spawnSync('ip', ['-V']).status !== 0) return 'ip (iproute2) missing';
    return undefined;
  }

  /** A host on the segment; `ownMounts`: with a mount namespace of its own too (TestHost.makeMountNs). */
  host(name: string, opts: { ownMounts?: boolean } = {}): TestHost {
    if (!this.made) {
      ip(['netns', 'add', this.switchNs]);
      this.made = true;
      ip(['-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', this.switchNs, 'link', 'set', 'br0', 'up']);
    }
    const i = this.hosts.length + 1;
    const ns = `tsvz-${this.id}-${name}`;
    ip(['netns', 'add', ns]);
    const h = new TestHost(name, ns, `${SUBNET}.${i}`);
    this.hosts.push(h);
    ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', this.switchNs]);
    ip(['-n', this.switchNs, 'link', 'set', `p${i}`, 'master', 'br0', 'up']);
    ip(['-n', ns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    if (opts.ownMounts) h.makeMountNs();
    return h;
  }

  remove(): void {
    for (const h of this.hosts) h.cleanup();
    for (const h of this.hosts) spawnSync('ip', ['netns', 'del', h.netns], { stdio: 'ignore' });
    for (const h of this.hosts) {
      if (!h.mountNs) continue;
      spawnSync('umount', [h.mountNs], { stdio: 'ignore' });
      fs.rmSync(h.mountNs, { force: true });
      fs.rmSync(`${h.mountNs}.cgroup`, { recursive: true, force: true });
    }
    if (this.made) spawnSync('ip', ['netns', 'del', this.switchNs], { stdio: 'ignore' });
  }
}

/** Hosts a and b of `net`, each with its own mounts and daemon, each the other's remote. */
export async function trustedPair(net: TestNetwork): Promise<[TestHost, TestHost]> {
  const a = net.host('a', { ownMounts: true });
  const b = net.host('b', { ownMounts: true });
  await a.startDaemon();
  await b.startDaemon();
  enrol(a, b);
  enrol(b, a);
  return [a, b];
}

/** `client` trusts `server` as a remote named after it. */
export function enrol(client: TestHost, server: TestHost): void {
  const token = server.ok(['trust', 'token', '--expires', '10m']).trim();
  client.ok(['remote', 'add', server.name, server.daemonAddress, '--token', token, '--as', client.name]);
}
