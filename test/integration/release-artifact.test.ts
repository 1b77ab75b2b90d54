import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { leftoverCgroups, leftoverMonitors, REPO, rootSkipReason, TestRoot } from '../helpers/cli';

/**
 * The release artifact as shipped: `scripts/package` makes the tarball from
 * this build, the test unpacks it into an empty directory and runs its tsvz
 * with a PATH that holds no node (nor npm), from /, with no node_modules
 * anywhere above it.
 */

const NODE_NAMES = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);

function whySkip(): string | undefined {
  const root = rootSkipReason();
  if (root) return root;
  if (!process.version.startsWith('v24.')) return `the artifact carries Node 24 and is built with it; this is ${process.version} (scripts/node-env puts setup-host's Node 24 first)`;
  if (!fs.existsSync(path.join(REPO, 'dist', 'bundle', 'tsvz.js'))) return 'no bundle (run scripts/build)';
  if (!fs.existsSync(path.join(REPO, 'node_modules', 'postject'))) return 'postject not installed (npm ci)';
  return undefined;
}

const skip = whySkip();
if (skip) console.log(`# skipped release artifact tests: ${skip}`);

/** A directory of links to every command on the usual PATH but node's and npm's. */
function pathWithoutNode(dir: string): void {
  fs.mkdirSync(dir);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    let names: string[] = [];
    try { names = fs.readdirSync(d); } catch { continue; }
    for (const n of names) {
      if (NODE_NAMES.has(n) || fs.existsSync(path.join(dir, n))) continue;
      try { fs.accessSync(path.join(d, n), fs.constants.X_OK); } catch { continue; }
      fs.symlinkSync(path.join(d, n), path.join(dir, n));
    }
  }
}

describe('the release artifact, unpacked anywhere, without Node on the host', { skip }, () => {
  const t = new TestRoot();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-artifact-'));
  const bin = path.join(work, 'bin');
  const env = { PATH: bin, HOME: work, LANG: 'C.UTF-8' };
  let dir = '';
  let exe = '';
  const tsvz = (args: string[], via = exe) => {
    const r = spawnSync(via, ['--root', t.dir, ...args], { encoding: 'utf8', env, cwd: '/', timeout: 120_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
  };
  const ok = (args: string[]) => {
    const r = tsvz(args);
    assert.equal(r.status, 0, `tsvz ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
    return r.stdout;
  };

  before(() => {
    const out = path.join(work, 'release');
    const made = spawnSync('bash', [path.join(REPO, 'scripts', 'package'), '--no-build', '--out', out], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(made.status, 0, `scripts/package: ${made.stdout}${made.stderr}`);
    const tarball = fs.readdirSync(out).find((f) => f.endsWith('-linux-x64.tar.gz'));
    assert.ok(tarball, `no tarball in ${out}`);
    const into = path.join(work, 'unpacked');
    fs.mkdirSync(into);
    assert.equal(spawnSync('tar', ['-C', into, '-xzf', path.join(out, tarball)]).status, 0);
    fs.rmSync(out, { recursive: true });
    dir = path.join(into, tarball.replace(/\.tar\.gz$/, ''));
    exe = path.join(dir, 'tsvz');
    pathWithoutNode(bin);
  });
  after(() => {
    t.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('holds one executable, the native helpers, koffi, a systemd unit and INSTALL; no Node or node_modules', () => {
    assert.notEqual(spawnSync('sh', ['-c', 'command -v node || command -v npm'], { env }).status, 0, 'no node on the PATH');
    for (const f of ['tsvz', 'lib/tsvz-monitor', 'lib/tsvz-exec']) {
      fs.accessSync(path.join(dir, f), fs.constants.X_OK);
    }
    assert.ok(fs.statSync(path.join(dir, 'lib/node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node')).isFile());
    assert.match(fs.readFileSync(path.join(dir, 'tsvz.service'), 'utf8'), /^Restart=on-failure$/m);
    assert.match(fs.readFileSync(path.join(dir, 'INSTALL'), 'utf8'), /tsvz doctor/);
    assert.ok(fs.existsSync(path.join(dir, 'licenses', 'node.txt')));
    // proto/ holds the .proto files read at run time, when there are any.
    const top = fs.readdirSync(dir).filter((f) => f !== 'proto').sort();
    assert.deepEqual(top, ['INSTALL', 'lib', 'licenses', 'tsvz', 'tsvz.service'], 'nothing else at the top');
    // koffi's native module, and the X.509 library the daemon loads beside its bundle (scripts/bundle.js's EXTERNAL).
    assert.deepEqual(fs.readdirSync(path.join(dir, 'lib', 'node_modules')).filter((d) => !['@koromix', '@peculiar', '@abraham'].includes(d) && !['asn1js', 'pvtsutils', 'pvutils', 'tslib', 'tsyringe'].includes(d)), []);
    assert.ok(fs.existsSync(path.join(dir, 'lib', 'node_modules', '@peculiar', 'x509', 'package.json')));
  });

  test('makes the host identity and an enrolment token (the daemon\'s X.509 library is inside)', () => {
    assert.match(ok(['trust', 'token', '--expires', '1m']), /^[A-Za-z0-9_-]{40,}\n$/, 'the token, printed once');
    assert.ok(fs.statSync(path.join(t.dir, 'daemon')).isDirectory());
  });

  test('--version names the version, the commit and the Node inside', () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const { commit } = JSON.parse(fs.readFileSync(path.join(REPO, 'dist', 'cli', 'build-info.json'), 'utf8')) as { commit: string };
    assert.equal(ok(['--version']), `tsvz ${version} (commit ${commit}, node ${process.version})\n`);
  });

  test('doctor finds the helpers beside the executable, also through a link from elsewhere', () => {
    const link = path.join(bin, 'tsvz');
    fs.symlinkSync(exe, link);
    const r = tsvz(['doctor', '--json'], link);
    assert.equal(r.status, 0, r.stderr);
    const checks = JSON.parse(r.stdout) as { name: string; ok: boolean; detail: string }[];
    for (const helper of ['tsvz-monitor', 'tsvz-exec']) {
      const c = checks.find((x) => x.name === helper);
      assert.deepEqual(c && { ok: c.ok, detail: c.detail }, { ok: true, detail: path.join(dir, 'lib', helper) });
    }
  });

  test('create, start, exec, checkpoint, restore and destroy', () => {
    ok(['create', 'a1', '--template', 'busybox', '--memory', '64M', '--pids', '64']);
    ok(['start', 'a1']);
    // Commands by their path: exec passes on tsvz's PATH, whose directory is not in the container.
    assert.equal(ok(['exec', 'a1', '--', '/bin/sh', '-c', 'echo kept > /tmp/note; /bin/cat /proc/1/comm']).trim(), 'init');
    const id = ok(['checkpoint', 'a1']).trim();
    assert.match(id, /^\d{8}-\d{6}-\d{3}$/);
    assert.equal((JSON.parse(ok(['info', 'a1', '--json'])) as { state: string }).state, 'stopped');
    ok(['restore', 'a1']);
    assert.equal((JSON.parse(ok(['info', 'a1', '--json'])) as { state: string }).state, 'running');
    assert.equal(ok(['exec', 'a1', '--', '/bin/cat', '/tmp/note']).trim(), 'kept', "the container's tmpfs came back");
    ok(['destroy', '--force', 'a1']);
    assert.deepEqual(JSON.parse(ok(['list', '--json'])), []);
    assert.deepEqual(leftoverMonitors(t.dir), []);
    assert.deepEqual(leftoverCgroups(t.dir), []);
  });

  test('keeps its code caches beside it, under its build and Node', () => {
    const caches = fs.readdirSync(path.join(dir, 'cache'));
    assert.equal(caches.length, 1);
    assert.match(caches[0], new RegExp(`^[0-9a-f]{16}-${process.version.replace(/\./g, '\\.')}$`));
    assert.ok(fs.existsSync(path.join(dir, 'cache', caches[0], 'start.v8')));
  });
});
