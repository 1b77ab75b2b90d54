import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CriuClient } from '../../checkpoint/criu/client';
import { lazyRestore } from '../../checkpoint/criu/lazy-pages';
import { probeLazyPages } from '../../checkpoint/criu/lazy-pages-probe';
import { sleep } from '../../lib/poll';
import { reapChild } from '../../lib/spawn-fds';
import { REPO } from '../helpers/cli';
import { memhogBinary } from '../helpers/memhog';

/*
 * Post-copy (lazy pages) between two CRIU runs on this host: a process is
 * dumped with its memory left in a page server, restored from the images,
 * and pulls its pages from that server. Three ways: through CRIU's RPC as
 * tsvz does (checkpoint/criu/lazy-pages.ts), with the CLI over TCP as two
 * hosts would, and with a page server that serves from the images. Each
 * checks the memory afterwards against the checksum taken before.
 * Root on these machines lacks CAP_SYS_RESOURCE: this passes only with the
 * CRIU that scripts/setup-host builds (patches/criu/, docs/criu-build.md).
 */
const client = new CriuClient(undefined, 120_000);
const skip =
  process.getuid?.() !== 0 ? 'needs root: CRIU dumps and restores processes'
  : spawnSync(client.criuPath, ['--version']).error ? `${client.criuPath} is not installed (scripts/setup-host builds it)`
  : spawnSync('cc', ['--version']).error ? 'needs cc to build test/fixtures/memhog.c'
  : false;

const MIB = 64;
/** Pages of memhog's buffer: each must come over. */
const HOG_PAGES = (MIB * 1024 * 1024) / 4096;
const dir = `/tmp/tsvz-test-${randomBytes(4).toString('hex')}`;
const children: ChildProcess[] = [];

async function until<T>(what: string, probe: () => T | undefined, ms = 20_000): Promise<T> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(20)) {
    const v = probe();
    if (v !== undefined) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

function readOr(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function childOf(parent: number): number | undefined {
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (Number(fs.readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]) === parent) return Number(entry);
    } catch {
      // exited while we looked
    }
  }
  return undefined;
}

/** Every live process whose root (memhog) or, unless `rootOnly`, command line (unshare, criu) is under the test dir. */
function ours(rootOnly = false): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      if (!alive(Number(entry))) continue;
      const root = fs.readlinkSync(`/proc/${entry}/root`);
      if (root.startsWith(dir) || (!rootOnly && fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir))) found.push(Number(entry));
    } catch {
      // exited, or not ours to look at
    }
  }
  return found;
}

interface Hog {
  pid: number;
  root: string;
  sum: string;
}

/**
 * memhog holding MIB MiB of distinct memory, chrooted into <dir>/<name> (it
 * writes its files at /), init of a new pid namespace and session leader.
 */
async function startHog(name: string): Promise<Hog> {
  const root = path.join(dir, name);
  fs.mkdirSync(root);
  fs.copyFileSync(memhogBinary(), path.join(root, 'memhog'));
  fs.chmodSync(path.join(root, 'memhog'), 0o755);
  const child = spawn('unshare', ['--pid', '--fork', 'setsid', 'chroot', root, '/memhog', String(MIB)], { stdio: 'ignore' });
  children.push(child);
  const pid = await until('memhog', () => {
    const p = childOf(child.pid!);
    return p !== undefined && fs.readlinkSync(`/proc/${p}/root`) === root ? p : undefined;
  });
  const sum = await until('memhog.sum', () => readOr(path.join(root, 'memhog.sum')));
  return { pid, root, sum };
}

/** The checksum memhog computes from its memory now. */
async function hogSumNow(hog: Hog): Promise<string> {
  fs.rmSync(path.join(hog.root, 'memhog.now'), { force: true });
  fs.writeFileSync(path.join(hog.root, 'memhog.ask'), '');
  return until('memhog.now', () => readOr(path.join(hog.root, 'memhog.now')));
}

function imagesDir(name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  return d;
}

/** A port on 127.0.0.1 free a moment ago. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `criu ARGS --status-fd 3`, resolved once it wrote its ready byte; `exited` gives its status. */
async function criuReady(args: string[]): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(client.criuPath, [...args, '--status-fd', '3'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const status = child.stdio[3] as NodeJS.ReadableStream;
  await new Promise<void>((resolve, reject) => {
    status.once('data', () => resolve());
    void exited.then((code) => reject(new Error(`criu ${args[0]} exited ${code} before it was ready: ${stderr}`)));
  });
  return { child, exited };
}

function criu(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(client.criuPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

function logErrors(images: string, log: string): string {
  return (readOr(path.join(images, log)) ?? '').split('\n').filter((l) => / Error \(/.test(l) && !/RLIMIT_NOFILE/.test(l)).join('\n');
}

/** The restored memhog's host pid, from --pidfile. */
function restoredPid(images: string): number {
  return Number(fs.readFileSync(path.join(images, 'restored.pid'), 'utf8'));
}

/** Its memory is the memory it had, and the dumped copy is gone: one memhog, intact. */
async function assertMoved(hog: Hog, pid: number): Promise<void> {
  assert.ok(alive(pid), 'the restored memhog runs');
  assert.equal(fs.readlinkSync(`/proc/${pid}/root`), hog.root);
  assert.equal(await hogSumNow(hog), hog.sum, "the restored memhog's memory is the dumped one's");
  await until('the dumped memhog to be gone', () => (alive(hog.pid) ? undefined : true));
  process.kill(pid, 'SIGKILL');
  await reapChild(pid);
}

function pagesIn(images: string): { copied: number; total: number } {
  let copied = 0;
  let total = 0;
  for (const m of (readOr(path.join(images, 'lazy-pages.log')) ?? '').matchAll(/UFFD transferred pages: \((\d+)\/(\d+)\)/g)) {
    copied += Number(m[1]);
    total += Number(m[2]);
  }
  return { copied, total };
}

describe('post-copy (lazy pages) between two CRIU runs on this host', { skip, timeout: 300_000 }, () => {
  before(() => fs.mkdirSync(dir));

  after(async () => {
    // memhogs first, so their unshare reaps them (this host's init reaps no orphan); restored ones are ours to reap.
    for (const pid of ours(true)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      await reapChild(pid);
    }
    await until('the unshare and criu processes to exit', () => (children.every((c) => c.exitCode !== null || c.signalCode !== null) ? true : undefined), 5000)
      .catch(() => children.forEach((c) => c.kill('SIGKILL')));
    for (const pid of ours()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the installed CRIU is the one set-up built, with the current patches/criu/', () => {
    const r = spawnSync('bash', ['-c', `. ${JSON.stringify(path.join(REPO, 'scripts', 'criu-build'))}; criu_installed_state`], { encoding: 'utf8' });
    assert.equal(r.stdout.trim(), 'ok', `${r.stdout}${r.stderr} (run scripts/setup-host)`);
  });

  it('FEATURE_CHECK says lazy_pages, and the probe agrees by moving a process', async (t) => {
    assert.equal((await client.featureCheck({ lazyPages: true })).lazyPages, true);
    const v = await probeLazyPages({ parentDir: dir });
    t.diagnostic(`probe: ${JSON.stringify(v)}`);
    assert.equal(v.ok, true, v.reason);
    assert.equal(v.reason, undefined);
    assert.ok(v.pages && v.pages.copied > 0 && v.pages.copied === v.pages.total, JSON.stringify(v.pages));
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('tsvz-lazy-probe-')), [], 'the probe cleans up');
  });

  it("the probe says no, with CRIU's reason, for a CRIU without patches/criu/ (FEATURE_CHECK says yes)", {
    skip: !process.env.TSVZ_CRIU_UNPATCHED && 'TSVZ_CRIU_UNPATCHED names no CRIU built without patches/criu/ (docs/criu-build.md says how to make one)',
  }, async (t) => {
    const unpatched = new CriuClient(process.env.TSVZ_CRIU_UNPATCHED, 30_000);
    assert.equal((await unpatched.featureCheck({ lazyPages: true })).lazyPages, true);
    const v = await probeLazyPages({ client: unpatched, parentDir: dir });
    t.diagnostic(`probe of ${unpatched.criuPath}: ${JSON.stringify(v)}`);
    assert.equal(v.ok, false);
    assert.match(v.reason ?? '', /^criu dump: Error \(criu\/page-pipe\.c:\d+\): page-pipe: (splice|tee): /);
    assert.deepEqual(ours(), [], 'nothing of the probe runs on');
  });

  it(`through CRIU's RPC as tsvz does: ${MIB} MiB pulled page by page, memory intact`, async (t) => {
    const hog = await startHog('hog-rpc');
    const images = imagesDir('img-rpc');
    const moved = await lazyRestore({
      pid: hog.pid, imagesDir: images, client, timeoutMs: 120_000,
      dump: { networkLock: 'SKIP' }, restore: { rstSibling: true, networkLock: 'SKIP' },
    });
    t.diagnostic(`rpc: ${JSON.stringify(moved)}`);
    assert.ok(moved.pages.total >= HOG_PAGES, `${moved.pages.total} pages to copy, memhog holds ${HOG_PAGES}`);
    assert.equal(moved.pages.copied, moved.pages.total);
    assert.ok(moved.times.restored <= moved.times.done);
    await assertMoved(hog, moved.pid);
  });

  it('with the CLI over TCP: criu dump --lazy-pages --port, criu lazy-pages --page-server, criu restore --lazy-pages', async (t) => {
    const hog = await startHog('hog-tcp');
    const images = imagesDir('img-tcp');
    const port = String(await freePort());
    const dump = await criuReady(['dump', '-t', String(hog.pid), '-D', images, '-o', 'dump.log', '-v4', '--lazy-pages', '--address', '127.0.0.1', '--port', port]);
    const daemon = await criuReady(['lazy-pages', '-D', images, '-o', 'lazy-pages.log', '-v4', '--page-server', '--address', '127.0.0.1', '--port', port]);
    const restore = await criu(['restore', '-D', images, '-o', 'restore.log', '-v4', '--lazy-pages', '--restore-sibling', '--restore-detached', '--pidfile', 'restored.pid']);
    assert.equal(restore.code, 0, logErrors(images, 'restore.log') || restore.stderr);
    assert.equal(await daemon.exited, 0, logErrors(images, 'lazy-pages.log'));
    assert.equal(await dump.exited, 0, logErrors(images, 'dump.log'));
    assert.match(fs.readFileSync(path.join(images, 'dump.log'), 'utf8'), /Lazy pages transfer finished successfully/);
    const pages = pagesIn(images);
    t.diagnostic(`tcp: ${JSON.stringify(pages)}`);
    assert.ok(pages.total >= HOG_PAGES && pages.copied === pages.total, JSON.stringify(pages));
    await assertMoved(hog, restoredPid(images));
  });

  it('a client that goes away before it closes its session: the dump fails and the tree runs on, its memory intact', async () => {
    const hog = await startHog('hog-vanish');
    const images = imagesDir('img-vanish');
    const port = await freePort();
    const dump = await criuReady(['dump', '-t', String(hog.pid), '-D', images, '-o', 'dump.log', '-v4', '--lazy-pages', '--address', '127.0.0.1', '--port', String(port)]);
    // As when the host, the daemon or the link between the two dies: the socket just ends.
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => sock.once('connect', () => resolve()).once('error', reject));
    sock.end();
    assert.notEqual(await dump.exited, 0, 'the dump failed');
    const log = fs.readFileSync(path.join(images, 'dump.log'), 'utf8');
    assert.match(log, /The lazy-pages client went away without closing/);
    assert.doesNotMatch(log, /Lazy pages transfer finished successfully/);
    assert.ok(alive(hog.pid), 'the dumped memhog was resumed, not killed');
    assert.equal(await hogSumNow(hog), hog.sum, 'with its memory as it was');
    process.kill(hog.pid, 'SIGKILL');
  });

  it('from the images: criu dump, criu page-server --lazy-pages, criu lazy-pages --page-server, criu restore --lazy-pages', async (t) => {
    const hog = await startHog('hog-images');
    const images = imagesDir('img-images');
    const dumped = await criu(['dump', '-t', String(hog.pid), '-D', images, '-o', 'dump.log', '-v4']);
    assert.equal(dumped.code, 0, logErrors(images, 'dump.log') || dumped.stderr);
    const port = String(await freePort());
    const server = await criuReady(['page-server', '-D', images, '-o', 'page-server.log', '-v4', '--lazy-pages', '--address', '127.0.0.1', '--port', port]);
    const daemon = await criuReady(['lazy-pages', '-D', images, '-o', 'lazy-pages.log', '-v4', '--page-server', '--address', '127.0.0.1', '--port', port]);
    const restore = await criu(['restore', '-D', images, '-o', 'restore.log', '-v4', '--lazy-pages', '--restore-sibling', '--restore-detached', '--pidfile', 'restored.pid']);
    assert.equal(restore.code, 0, logErrors(images, 'restore.log') || restore.stderr);
    assert.equal(await daemon.exited, 0, logErrors(images, 'lazy-pages.log'));
    assert.equal(await server.exited, 0, logErrors(images, 'page-server.log'));
    const pages = pagesIn(images);
    t.diagnostic(`images: ${JSON.stringify(pages)}`);
    assert.ok(pages.total >= HOG_PAGES && pages.copied === pages.total, JSON.stringify(pages));
    await assertMoved(hog, restoredPid(images));
  });
});
