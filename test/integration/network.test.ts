import { strict as assert } from 'node:assert';
import childProcess = require('node:child_process');
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { CommandError, InvalidArgumentError, InvalidStateError } from '../../lib/errors';
import { findCommand, run } from '../../lib/process';
import {
  connectContainer,
  disconnectContainer,
  ensureBridge,
  hostVethName,
  removeBridgeIfUnused,
} from '../../runtime/network';
import { sleep } from '../../lib/poll';

/*
 * Root only. "Containers" are `unshare --net sleep` processes, each in its
 * own network namespace. Every address configured here is in 198.18.0.0/15,
 * and nothing is routed anywhere else.
 */

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const [cmd, pkg] of [['ip', 'iproute2'], ['nsenter', 'util-linux'], ['unshare', 'util-linux']]) {
    if (!findCommand(cmd)) return `"${cmd}" is missing (install ${pkg})`;
  }
  if (!findCommand('ping') && !findCommand('busybox')) return 'neither ping nor busybox is installed';
  return undefined;
}

const reason = skipReason();
if (reason) console.log(`network integration tests skipped: ${reason}`);

const SYS_NET = '/sys/class/net';
const exists = (ifname: string) => fs.existsSync(`${SYS_NET}/${ifname}`);

describe('bridge networking', { skip: reason }, () => {
  const tag = randomBytes(2).toString('hex');
  const bridge = `tsvz-tbr${tag}`; // 12 chars
  const raceBridge = `tsvz-tbr${tag}r`;
  const gateway = '198.18.200.1';
  const cfgA = { bridge, address: '198.18.200.10/24' };
  const cfgB = { bridge, address: '198.18.200.11/24' };
  const root = `/tmp/tsvz-nettest-${tag}`;
  const keys = { a: `${root}/a`, b: `${root}/b`, c: `${root}/c`, d: `${root}/d` };
  const procs: ChildProcess[] = [];
  const pids: Record<string, number> = {};
  const timings: number[] = [];

  after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const key of Object.values(keys)) await run('ip', ['link', 'del', 'dev', hostVethName(key)], { allowFail: true });
    for (const br of [bridge, raceBridge]) await run('ip', ['link', 'del', 'dev', br], { allowFail: true });
    await run('ip', ['addr', 'del', '198.18.0.1/15', 'dev', 'lo'], { allowFail: true }); // only if the "lo" guard failed
    if (timings.length > 0) {
      const sorted = [...timings].sort((x, y) => x - y);
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
      console.log(`connectContainer timing: n=${sorted.length} min=${at(0)}ms median=${at(0.5)}ms p90=${at(0.9)}ms max=${at(1)}ms`);
    }
  });

  /** Start a process in a new network namespace; resolve with its pid once it is really inside. */
  async function startContainer(): Promise<number> {
    const child = spawn(findCommand('unshare')!, ['--net', 'sleep', '60'], { stdio: 'ignore' });
    procs.push(child);
    const hostNs = fs.readlinkSync('/proc/self/ns/net');
    for (let i = 0; i < 500; i++) {
      // unshare(1) unshares, then execs sleep in place: the spawned pid is the one inside.
      let ns: string | undefined;
      try { ns = fs.readlinkSync(`/proc/${child.pid}/ns/net`); } catch { /* not yet */ }
      if (ns && ns !== hostNs) return child.pid!;
      await sleep(10);
    }
    throw new Error('unshare --net did not enter a new network namespace');
  }

  function inNetns(pid: number, cmd: string, args: string[], allowFail = false) {
    return run('nsenter', ['-t', String(pid), '-n', findCommand(cmd)!, ...args], { allowFail });
  }

  function ping(fromPid: number, to: string) {
    const [cmd, args] = findCommand('ping') ? ['ping', []] : ['busybox', ['ping']];
    return inNetns(fromPid, cmd, [...args, '-c1', '-W1', to], true);
  }

  async function timedConnect(pid: number, key: string, cfg: typeof cfgA): Promise<void> {
    const t0 = process.hrtime.bigint();
    await connectContainer(pid, key, cfg);
    timings.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }

  async function waitGone(ifname: string, ms = 5000): Promise<boolean> {
    for (let waited = 0; waited < ms; waited += 20) {
      if (!exists(ifname)) return true;
      await sleep(20);
    }
    return !exists(ifname);
  }

  it('ensureBridge creates the bridge with the gateway address, up, and is idempotent', async () => {
    await ensureBridge(cfgA);
    await ensureBridge(cfgB);
    await ensureBridge(cfgA);
    assert.ok(fs.existsSync(`${SYS_NET}/${bridge}/bridge`), 'is a bridge');
    const addrs = (await run('ip', ['-o', '-4', 'addr', 'show', 'dev', bridge])).stdout;
    assert.equal(addrs.match(/inet 198\.18\.200\.1\/24 /g)?.length, 1, addrs);
    assert.match((await run('ip', ['-o', 'link', 'show', 'dev', bridge])).stdout, /<[^>]*\bUP\b/);
  });

  it('connectContainer gives each container eth0 with its address and a default route via the gateway', async () => {
    pids.a = await startContainer();
    pids.b = await startContainer();
    await timedConnect(pids.a, keys.a, cfgA);
    await timedConnect(pids.b, keys.b, cfgB);

    for (const [name, pid, addr] of [['a', pids.a, '198.18.200.10'], ['b', pids.b, '198.18.200.11']] as const) {
      const veth = hostVethName(keys[name]);
      assert.ok(fs.existsSync(`${SYS_NET}/${bridge}/brif/${veth}`), `${veth} is a port of ${bridge}`);
      const out = (await inNetns(pid, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
      assert.match(out, new RegExp(`inet ${addr.replace(/\./g, '\\.')}/24 `), out);
      const routes = (await inNetns(pid, 'ip', ['-4', 'route', 'show', 'default'])).stdout;
      assert.match(routes, new RegExp(`^default via ${gateway.replace(/\./g, '\\.')} dev eth0`), routes);
      assert.equal(routes.trim().split('\n').length, 1, routes);
    }
  });

  it('the containers can ping each other and the gateway', async () => {
    for (const [from, to] of [[pids.a, '198.18.200.11'], [pids.b, '198.18.200.10'], [pids.a, gateway]] as const) {
      const r = await ping(from, to);
      assert.equal(r.status, 0, `ping ${to} from pid ${from} failed:\n${r.stdout}${r.stderr}`);
    }
  });

  it('ensureBridge on a configured bridge spawns nothing (fast path)', async () => {
    // lib/process reads child_process.spawn at call time, so counting here sees every spawn.
    const original = childProcess.spawn;
    let spawns = 0;
    childProcess.spawn = ((...args: Parameters<typeof original>) => (spawns++, original(...args))) as typeof original;
    const t0 = process.hrtime.bigint();
    try {
      await ensureBridge(cfgA);
    } finally {
      childProcess.spawn = original;
    }
    console.log(`ensureBridge timing (already configured): ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(2)}ms`);
    assert.equal(spawns, 0);
  });

  it('connecting an already connected container fails and leaves it intact', async () => {
    await assert.rejects(async () => connectContainer(pids.a, keys.a, cfgA), (err: unknown) => err instanceof CommandError && /File exists/.test(err.message));
    // Another key: the veth is new, but eth0 already exists in the netns.
    await assert.rejects(async () => connectContainer(pids.a, keys.d, cfgA), CommandError);
    assert.ok(!exists(hostVethName(keys.d)));
    assert.equal((await ping(pids.b, '198.18.200.10')).status, 0);
  });

  it('on a failure inside the netns the host veth is removed again', async () => {
    pids.c = await startContainer();
    // A pre-existing default route makes the last step (route add default) fail.
    await inNetns(pids.c, 'ip', ['link', 'set', 'dev', 'lo', 'up']);
    await inNetns(pids.c, 'ip', ['route', 'add', 'default', 'dev', 'lo']);
    await assert.rejects(async () => connectContainer(pids.c, keys.c, { bridge, address: '198.18.200.12/24' }),
      (err: unknown) => err instanceof CommandError && /route add default via 198\.18\.200\.1 dev eth0.*File exists/.test(err.message),
    );
    assert.ok(!exists(hostVethName(keys.c)), 'host veth removed');
    assert.ok(!/eth0/.test((await inNetns(pids.c, 'ip', ['-o', 'link'])).stdout), 'peer gone with it');
  });

  it('refuses a pid in the host network namespace, a dead pid and a bad address before touching anything', async () => {
    await assert.rejects(async () => connectContainer(process.pid, keys.d, cfgA), InvalidStateError);
    await assert.rejects(async () => connectContainer(2 ** 22 + 1, keys.d, cfgA), /does not exist/);
    await assert.rejects(async () => connectContainer(pids.c, keys.d, { bridge, address: '198.18.200.1/24' }), InvalidArgumentError);
    await assert.rejects(async () => connectContainer(pids.c, keys.d, { bridge: 'bad name', address: '198.18.200.13/24' }), InvalidArgumentError);
    assert.ok(!exists(hostVethName(keys.d)));
  });

  it('connectContainer timing (repeated connect/disconnect)', async () => {
    await inNetns(pids.c, 'ip', ['route', 'del', 'default', 'dev', 'lo']);
    const cfgC = { bridge, address: '198.18.200.12/24' };
    for (let i = 0; i < 20; i++) {
      await timedConnect(pids.c, keys.c, cfgC);
      await disconnectContainer(keys.c);
    }
    await timedConnect(pids.c, keys.c, cfgC);
    assert.equal((await ping(pids.c, '198.18.200.10')).status, 0);
  });

  it('the host veth vanishes when the container dies', async () => {
    const a = procs.find((p) => p.pid === pids.a)!;
    const exited = new Promise((resolve) => a.once('exit', resolve));
    a.kill('SIGKILL');
    await exited;
    assert.ok(await waitGone(hostVethName(keys.a)), 'host veth of the dead container is gone');
  });

  it('removeBridgeIfUnused keeps a bridge with ports; disconnectContainer is idempotent', async () => {
    await removeBridgeIfUnused(bridge);
    assert.ok(exists(bridge), 'bridge with ports attached is kept');

    await disconnectContainer(keys.a); // already gone with its netns
    for (const key of [keys.b, keys.b, keys.c, keys.c]) await disconnectContainer(key);
    assert.ok(!exists(hostVethName(keys.b)));
    assert.ok(!exists(hostVethName(keys.c)));
    assert.ok(!/eth0/.test((await inNetns(pids.b, 'ip', ['-o', 'link'])).stdout), 'peer gone from the container');
  });

  it('removeBridgeIfUnused removes the unused bridge, idempotently', async () => {
    await removeBridgeIfUnused(bridge);
    assert.ok(!exists(bridge));
    await removeBridgeIfUnused(bridge);
  });

  it('ensureBridge is safe when several processes race to create the same bridge', async () => {
    const modulePath = path.resolve(__dirname, '../../runtime/network.js');
    const script = `require(${JSON.stringify(modulePath)}).ensureBridge({ bridge: ${JSON.stringify(raceBridge)}, address: '198.18.201.10/24' })`;
    const codes = await Promise.all(
      Array.from({ length: 6 }, () => new Promise<string>((resolve) => {
        const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        child.on('exit', (code) => resolve(`${code}${stderr ? ` ${stderr}` : ''}`));
      })),
    );
    assert.deepEqual(codes, Array(6).fill('0'));
    const addrs = (await run('ip', ['-o', '-4', 'addr', 'show', 'dev', raceBridge])).stdout;
    assert.equal(addrs.match(/inet 198\.18\.201\.1\/24 /g)?.length, 1, addrs);
    await removeBridgeIfUnused(raceBridge);
    assert.ok(!exists(raceBridge));
  });

  it('never configures or deletes an existing interface that is not a bridge', async () => {
    await assert.rejects(async () => ensureBridge({ bridge: 'lo', address: '198.18.0.10/15' }), /not a bridge/);
    await assert.rejects(async () => removeBridgeIfUnused('lo'), /not a bridge/);
    assert.ok(!/198\.18\./.test((await run('ip', ['-o', 'addr', 'show', 'dev', 'lo'])).stdout));
  });
});
