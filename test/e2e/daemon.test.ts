import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, REPO, rootSkipReason, sleep } from '../helpers/cli';
import { TestHost, TestNetwork } from '../helpers/netns';

/**
 * The host daemon end to end: real daemons in network namespaces speaking
 * real TLS, real containers, the CLI on one host driving another
 * (docs/daemon.md). Each bad input of the issue is a test here.
 */
const skip = rootSkipReason() ?? TestNetwork.skipReason();
if (skip) console.log(`# skipped daemon e2e tests: ${skip}`);

const PROBE = path.join(REPO, 'dist', 'test', 'helpers', 'daemon-probe.js');
const TICKER = '/bin/sh -c "while :; do echo tick; sleep 0.2; done"';

function exitOf(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

function collect(p: ChildProcess): { out: string; err: string } {
  const got = { out: '', err: '' };
  p.stdout!.on('data', (d) => { got.out += d; });
  p.stderr!.on('data', (d) => { got.err += d; });
  return got;
}

describe('tsvz daemon between two hosts', { skip }, () => {
  const net = new TestNetwork();
  let a: TestHost;
  let b: TestHost;
  let c: TestHost;

  /** `tsvz remote add` of `client` to b under the name b, with a fresh token. */
  function enrol(client: TestHost, as: string): string {
    const token = b.ok(['trust', 'token', '--expires', '10m']).trim();
    return client.ok(['remote', 'add', 'b', b.daemonAddress, '--token', token, '--as', as]);
  }

  function probe(host: TestHost, scenario: string, ...args: string[]): any {
    const r = host.exec([process.execPath, PROBE, host.dir, 'b', scenario, ...args], { timeoutMs: 180_000 });
    assert.ok(r.stdout.trim(), `probe ${scenario}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  before(async () => {
    a = net.host('a');
    b = net.host('b');
    c = net.host('c');
    await b.startDaemon();
    assert.match(enrol(a, 'host-a'), /^added remote b \(198\.18\.0\.2:7443, /);
    b.ok(['create', 'c1', '--init', TICKER]);
    b.ok(['start', 'c1']);
  });
  after(() => net.remove());

  test('remote list and info print what the local CLI prints on that host', () => {
    assert.equal(a.ok(['--remote', 'b', 'list']), b.ok(['list']));
    const remote = JSON.parse(a.ok(['--remote', 'b', 'info', 'c1', '--json']));
    const local = JSON.parse(b.ok(['info', 'c1', '--json']));
    delete remote.cgroup;
    delete local.cgroup;
    assert.deepEqual(remote, local);
    assert.equal(remote.state, 'running');
  });

  test('start, stop, checkpoint, snapshot and logs run on the remote host', () => {
    b.ok(['create', 'c2', '--init', TICKER]);
    assert.match(a.ok(['--remote', 'b', 'start', 'c2']), /^started c2 \(init pid \d+\)\n$/);
    assert.equal(JSON.parse(b.ok(['info', 'c2', '--json'])).state, 'running');
    const id = a.ok(['--remote', 'b', 'checkpoint', 'c2', '--name', 'ck1']).trim();
    assert.equal(id, 'ck1');
    assert.equal(JSON.parse(b.ok(['info', 'c2', '--json'])).checkpoint, 'ck1');
    b.ok(['restore', 'c2']);
    assert.equal(a.ok(['--remote', 'b', 'snapshot', 'c2', 's1']).trim(), 's1');
    assert.deepEqual(JSON.parse(b.ok(['snapshot', 'list', 'c2', '--json'])).map((s: { name: string }) => s.name), ['s1']);
    assert.match(a.ok(['--remote', 'b', 'logs', 'c2', '--tail', '3']), /^(tick\n){1,3}$/);
    assert.equal(a.ok(['--remote', 'b', 'stop', 'c2', '--timeout', '0']), 'stopped c2\n');
    assert.equal(JSON.parse(b.ok(['info', 'c2', '--json'])).state, 'stopped');
  });

  test('logs -f streams over the remote until the caller leaves; the call then ends on the daemon', async () => {
    const p = a.spawn(['--remote', 'b', 'logs', '-f', 'c1']);
    const got = collect(p);
    assert.ok(await eventually(() => got.out.split('tick').length > 10, 20_000), got.err);
    const before = got.out.length;
    assert.ok(await eventually(() => got.out.length > before, 5000), 'still streaming');
    p.kill('SIGINT');
    await exitOf(p);
    const metrics = () => b.exec(['curl', '-s', 'http://127.0.0.1:9443/metrics']).stdout;
    assert.ok(await eventually(() => /tsvz_daemon_requests_in_flight\{method="\/tsvz\.v1\.Containers\/Logs"\} 0/.test(metrics()), 5000), metrics());
  });

  test('remote info describes the host; the health service and metrics answer; doctor shows the daemon', () => {
    const d = JSON.parse(a.ok(['remote', 'info', 'b', '--json']));
    assert.match(d.criuVersion, /^4\./);
    assert.ok(['v1', 'v2', 'hybrid'].includes(d.cgroupMode));
    assert.ok(d.cpuFlags.length > 10);
    assert.deepEqual(d.pools.find((p: { name: string }) => p.name === 'default').transferFormats, ['tar']);
    assert.equal(typeof d.criuFeatures.lazyPages, 'boolean');
    assert.equal(d.fingerprint, JSON.parse(a.ok(['remote', 'list', '--json']))[0].fingerprint);
    assert.deepEqual(probe(a, 'health'), { status: 'SERVING' });
    const metrics = b.exec(['curl', '-s', 'http://127.0.0.1:9443/metrics']).stdout;
    assert.match(metrics, /tsvz_daemon_requests_total\{code="OK",method="\/tsvz\.v1\.Containers\/List"\} \d+/);
    assert.match(metrics, /tsvz_daemon_request_duration_seconds_bucket\{method="\/tsvz\.v1\.Containers\/Info",le="\+Inf"\} \d+/);
    const doctor = JSON.parse(b.ok(['doctor', '--json'])).find((x: { name: string }) => x.name === 'daemon');
    assert.equal(doctor.ok, true);
    assert.match(doctor.detail, new RegExp(`running \\(pid \\d+\\) on ${b.daemonAddress.replace(/\./g, '\\.')}; fingerprint ${d.fingerprint}`));
    const unit = b.ok(['daemon', 'unit', '--listen', b.daemonAddress]);
    assert.match(unit, /^Restart=on-failure$/m);
    assert.match(unit, new RegExp(`^ExecStart=.* --root ${b.dir} daemon --listen ${b.daemonAddress.replace(/\./g, '\\.')}$`, 'm'));
    // Every log line is one JSON object.
    for (const line of b.daemonLog.trim().split('\n')) assert.equal(typeof JSON.parse(line).event, 'string', line);
  });

  test('TLS 1.3 only; the identity and trust files are the owner\'s alone', () => {
    const old = a.exec(['openssl', 's_client', '-connect', b.daemonAddress, '-tls1_2', '-servername', 'tsvz'], { timeoutMs: 20_000 });
    assert.notEqual(old.status, 0, 'a TLS 1.2 handshake is refused');
    const current = a.exec(['openssl', 's_client', '-connect', b.daemonAddress, '-tls1_3', '-servername', 'tsvz', '-brief'], { timeoutMs: 20_000 });
    assert.match(current.stdout + current.stderr, /Protocol version: TLSv1\.3/);
    const mode = (f: string) => fs.statSync(path.join(b.dir, 'daemon', f)).mode & 0o777;
    assert.equal(mode('.'), 0o700);
    for (const f of ['host.key', 'host.crt', 'trust.json', 'tokens.json']) assert.equal(mode(f), 0o600, f);
  });

  test('a remote error prints as the local one, prefixed with the host', () => {
    const local = b.run(['info', 'nope']);
    const remote = a.run(['--remote', 'b', 'info', 'nope']);
    assert.equal(remote.status, local.status);
    assert.equal(remote.stderr, local.stderr.replace(/^tsvz: /, 'tsvz: b: '));
  });

  test('an unknown client certificate is refused (UNAUTHENTICATED) and logged', async () => {
    // c pins b correctly (a copy of a's remote) but b never enrolled c's certificate.
    c.ok(['trust', 'token']); // makes c's identity
    fs.mkdirSync(path.join(c.dir, 'daemon'), { recursive: true });
    fs.copyFileSync(path.join(a.dir, 'daemon', 'remotes.json'), path.join(c.dir, 'daemon', 'remotes.json'));
    const r = c.run(['--remote', 'b', 'list']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'tsvz: b: client certificate is not trusted by this host (enrol with `tsvz remote add HOST ADDRESS --token T`)\n');
    // The daemon's stderr is read while the test waits, not during a spawnSync.
    assert.ok(await eventually(() => /"code":"UNAUTHENTICATED".*"error":"client certificate is not trusted by this host"/.test(b.daemonLog), 5000), b.daemonLog);
  });

  test('a revoked client is refused (PERMISSION_DENIED), and its call in flight is cut', async () => {
    fs.rmSync(path.join(c.dir, 'daemon', 'remotes.json'));
    enrol(c, 'host-c');
    assert.match(c.ok(['--remote', 'b', 'list']), /c1/);
    const p = c.spawn(['--remote', 'b', 'logs', '-f', 'c1']);
    const got = collect(p);
    assert.ok(await eventually(() => got.out.includes('tick'), 20_000), got.err);
    assert.equal(b.ok(['trust', 'rm', 'host-c']), 'revoked host-c\n');
    const code = await Promise.race([exitOf(p), sleep(10_000).then(() => 'hung')]);
    assert.equal(code, 1, 'the stream ends when its client is revoked');
    assert.equal(got.err, 'tsvz: b: client host-c was revoked (ask for a new token)\n');
    const r = c.run(['--remote', 'b', 'list']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsvz: b: client host-c was revoked at \S+ \(ask for a new token\)\n$/);
    assert.match(b.daemonLog, /"event":"revoked"/);
    assert.match(JSON.parse(b.ok(['trust', 'list', '--json'])).find((x: { name: string }) => x.name === 'host-c').revokedAt, /^\d{4}-/);
    // a is untouched.
    assert.match(a.ok(['--remote', 'b', 'list']), /c1/);
  });

  test('an expired token is refused', async () => {
    const token = b.ok(['trust', 'token', '--expires', '1s']).trim();
    await sleep(1500);
    const r = c.run(['remote', 'add', 'b-late', b.daemonAddress, '--token', token, '--as', 'host-c2']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsvz: b-late: enrolment token [0-9a-f]{12} expired at \S+ \(ask for a new one\)\n$/);
  });

  test('a token works once', () => {
    const token = b.ok(['trust', 'token']).trim();
    c.ok(['remote', 'add', 'b-once', b.daemonAddress, '--token', token, '--as', 'host-c3']);
    const r = a.run(['remote', 'add', 'b-twice', b.daemonAddress, '--token', token, '--as', 'host-a2']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsvz: b-twice: enrolment token [0-9a-f]{12} was already used at \S+ \(a token works once: ask for a new one\)\n$/);
    assert.equal(JSON.parse(a.ok(['remote', 'list', '--json'])).length, 1, 'nothing saved');
  });

  test('a token for another host is refused before its secret is sent (fingerprint mismatch)', async () => {
    const tokenOfA = a.ok(['trust', 'token']).trim();
    await sleep(300); // the daemon's earlier lines read in
    const enrolsBefore = (b.daemonLog.match(/Trust\/Enrol/g) ?? []).length;
    const r = c.run(['remote', 'add', 'b-wrong', b.daemonAddress, '--token', tokenOfA]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^tsvz: b-wrong: the host at 198\.18\.0\.2:7443 is not the one this token is for \(its certificate is [0-9A-F:]{95}, the token names [0-9A-F:]{95}\) \(check the address, or ask that host for its own token\)\n$/);
    await sleep(300);
    assert.equal((b.daemonLog.match(/Trust\/Enrol/g) ?? []).length, enrolsBefore, 'no enrolment reached b');
  });

  test('a bad name in every RPC that takes one is INVALID_ARGUMENT, before any path is built', () => {
    const results: { rpc: string; field: string; name: string; code: string }[] = probe(a, 'names', 'c1');
    assert.equal(results.length, 4 * 9);
    for (const r of results) assert.equal(r.code, 'EINVAL', JSON.stringify(r));
    assert.deepEqual(fs.readdirSync(path.join(b.dir, 'containers')).sort(), ['c1', 'c2']);
    assert.deepEqual(fs.readdirSync(path.join(b.dir, 'daemon', 'incoming')), []);
  });

  test('a 100 MiB message is RESOURCE_EXHAUSTED; the daemon serves on', () => {
    assert.deepEqual(probe(a, 'big'), { code: 'ELIMIT', after: 'OK' });
  });

  test('restore --import over a remote uploads the archive and restores it there', () => {
    a.ok(['create', 'src', '--init', TICKER]);
    a.ok(['start', 'src']);
    a.ok(['checkpoint', 'src', '--name', 'x1']);
    const archive = path.join(a.dir, 'src.tar');
    a.ok(['checkpoint', 'export', 'src', 'x1', archive]);
    assert.match(a.ok(['--remote', 'b', 'restore', 'moved', '--import', archive]), /^restored moved from src's checkpoint x1 \(init pid \d+\)\n$/);
    assert.equal(JSON.parse(b.ok(['info', 'moved', '--json'])).state, 'running');
    assert.deepEqual(fs.readdirSync(path.join(b.dir, 'daemon', 'incoming')), []);
    b.ok(['destroy', '--force', 'moved']);
  });

  test('an upload that never ends is stopped at the limit (RESOURCE_EXHAUSTED) and leaves nothing', async () => {
    await b.stopDaemon();
    await b.startDaemon(['--max-upload', '16M', '--upload-idle', '2s']);
    const r = probe(a, 'endless', 'imp1', '60000');
    assert.equal(r.code, 'ELIMIT');
    assert.ok(r.sentMiB >= 16 && r.sentMiB < 200, `stopped soon after the limit: ${r.sentMiB} MiB sent`);
    assert.deepEqual(fs.readdirSync(path.join(b.dir, 'daemon', 'incoming')), []);
    assert.equal(fs.existsSync(path.join(b.dir, 'containers', 'imp1')), false);
    // One that stalls ends too.
    const idle = probe(a, 'idle', 'imp2', '30000');
    assert.equal(idle.code, 'ETIMEDOUT');
    assert.ok(idle.ms < 10_000, `${idle.ms} ms`);
    assert.deepEqual(fs.readdirSync(path.join(b.dir, 'daemon', 'incoming')), []);
  });

  test('two remote operations on one container: the second waits for the first', async () => {
    await b.stopDaemon();
    await b.startDaemon([], { TSVZ_FAULT: 'checkpoint:frozen', TSVZ_FAULT_MS: '2500' });
    const first = a.spawn(['--remote', 'b', 'checkpoint', 'c1', '--leave-running', '--name', 'both1']);
    const firstOut = collect(first);
    assert.ok(await eventually(() => b.daemonLog.includes('fault point checkpoint:frozen reached'), 20_000), b.daemonLog);
    const started = Date.now();
    const second = a.run(['--remote', 'b', 'snapshot', 'c1', 'both2']);
    const waited = Date.now() - started;
    assert.equal(await exitOf(first), 0, firstOut.err);
    // One waits (lib/lock's queue) or is told busy (exit 75): never both at once.
    if (second.status === 0) assert.ok(waited > 1000, `the snapshot waited for the checkpoint (${waited} ms)`);
    else assert.equal(second.status, 75, second.stderr);
    // The local CLI and the daemon on one root: the flock holds across the processes.
    const remote = a.spawn(['--remote', 'b', 'checkpoint', 'c1', '--leave-running', '--name', 'both3']);
    const remoteOut = collect(remote);
    const mark = b.daemonLog.length;
    assert.ok(await eventually(() => b.daemonLog.slice(mark).includes('fault point checkpoint:frozen reached'), 20_000), b.daemonLog);
    const t0 = Date.now();
    const local = b.run(['snapshot', 'c1', 'both4']);
    const localWaited = Date.now() - t0;
    assert.equal(await exitOf(remote), 0, remoteOut.err);
    if (local.status === 0) assert.ok(localWaited > 1000, `the local snapshot waited for the remote checkpoint (${localWaited} ms)`);
    else assert.equal(local.status, 75, local.stderr);
    assert.equal(JSON.parse(b.ok(['info', 'c1', '--json'])).state, 'running');
  });

  test('SIGTERM drains: a call in flight finishes, a following stream is told, the daemon exits 0', async () => {
    const logs = a.spawn(['--remote', 'b', 'logs', '-f', 'c1']);
    const logsOut = collect(logs);
    assert.ok(await eventually(() => logsOut.out.includes('tick'), 20_000), logsOut.err);
    const mark = b.daemonLog.length;
    const ck = a.spawn(['--remote', 'b', 'checkpoint', 'c1', '--leave-running', '--name', 'drain1']);
    const ckOut = collect(ck);
    assert.ok(await eventually(() => b.daemonLog.slice(mark).includes('fault point checkpoint:frozen reached'), 20_000), b.daemonLog);
    const code = await b.stopDaemon('SIGTERM');
    assert.equal(code, 0);
    assert.equal(await exitOf(ck), 0, ckOut.err);
    assert.equal(ckOut.out, 'drain1\n');
    assert.equal(await exitOf(logs), 1);
    assert.equal(logsOut.err, 'tsvz: b: the daemon is shutting down (retry when it is back)\n');
  });

  test('the daemon killed (SIGKILL) mid-checkpoint: the container is running or checkpointed, and destroy --force works', async () => {
    b.ok(['create', 'k1', '--init', TICKER]);
    b.ok(['start', 'k1']);
    await b.startDaemon([], { TSVZ_FAULT: 'checkpoint:frozen', TSVZ_FAULT_MS: '20000' });
    const ck = a.spawn(['--remote', 'b', 'checkpoint', 'k1']);
    const ckOut = collect(ck);
    assert.ok(await eventually(() => b.daemonLog.includes('fault point checkpoint:frozen reached'), 20_000), b.daemonLog);
    await b.stopDaemon('SIGKILL');
    assert.equal(await exitOf(ck), 1);
    assert.match(ckOut.err, /^tsvz: b: /);
    let info: { state: string; checkpoint?: string } = JSON.parse(b.ok(['info', 'k1', '--json']));
    if (info.state === 'frozen') {
      // CRIU may still be letting go of the tree it froze: it thaws it as it exits.
      await eventually(() => (info = JSON.parse(b.ok(['info', 'k1', '--json']))).state !== 'frozen', 10_000);
    }
    assert.ok(info.state === 'running' || (info.state === 'stopped' && info.checkpoint !== undefined), JSON.stringify(info));
    b.ok(['destroy', '--force', 'k1']);
    assert.equal(fs.existsSync(path.join(b.dir, 'containers', 'k1')), false);
  });

  test('restarted, the daemon keeps remotes and trust; tokens issued before stay single-use', async () => {
    if (b.daemon) await b.stopDaemon();
    await b.startDaemon();
    const used = b.ok(['trust', 'token']).trim();
    c.ok(['remote', 'add', 'b-before', b.daemonAddress, '--token', used, '--as', 'host-c4']);
    const unused = b.ok(['trust', 'token']).trim();
    await b.stopDaemon();
    await b.startDaemon();
    assert.match(a.ok(['--remote', 'b', 'list']), /c1/);
    const again = c.run(['remote', 'add', 'b-again', b.daemonAddress, '--token', used, '--as', 'host-c5']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /was already used/);
    c.ok(['remote', 'add', 'b-after', b.daemonAddress, '--token', unused, '--as', 'host-c6']);
    const twice = c.run(['remote', 'add', 'b-twice', b.daemonAddress, '--token', unused, '--as', 'host-c7']);
    assert.match(twice.stderr, /was already used/);
  });
});
