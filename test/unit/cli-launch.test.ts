import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { commandOf, commandsFor, COMMANDS, runKeyOf } from '../../cli/command-names';

const REPO = path.resolve(__dirname, '..', '..', '..');
const TSVZ = path.join(REPO, 'bin', 'tsvz');
const CACHE_DIR = path.join(REPO, 'dist', 'bundle', 'cache', process.version);

const argv = (...args: string[]) => ['node', 'tsvz', ...args];

describe('which command an argv runs', () => {
  it('skips the global options', () => {
    assert.equal(commandOf(argv('list')), 'list');
    assert.equal(commandOf(argv('--root', '/srv/x', 'exec', 'p1', '--', 'list')), 'exec');
    assert.equal(commandOf(argv('--root=/srv/x', '--debug', 'start', 'p1')), 'start');
    assert.equal(commandOf(argv('ls')), 'list');
  });

  it('is undefined for help, nothing and unknown words; then every command is loaded', () => {
    for (const a of [argv(), argv('--help'), argv('frob'), argv('--root', 'list')]) {
      assert.equal(commandOf(a), undefined, a.join(' '));
      assert.deepEqual(commandsFor(a), COMMANDS);
    }
    assert.deepEqual(commandsFor(argv('info', 'p1')), ['info']);
  });

  it('names a subcommand for its code cache, the default one when none is given', () => {
    assert.equal(runKeyOf(argv('--root', '/srv/x', 'checkpoint', 'p1')), 'checkpoint-create');
    assert.equal(runKeyOf(argv('checkpoint', 'list', 'p1')), 'checkpoint-list');
    assert.equal(runKeyOf(argv('snapshot', 'rollback', 'p1', 's1')), 'snapshot-rollback');
    assert.equal(runKeyOf(argv('pool', 'info', 'fast')), 'pool-info');
    assert.equal(runKeyOf(argv('ls')), 'list');
    assert.equal(runKeyOf(argv('--help')), undefined);
  });
});

function whyNoCacheTests(): string | false {
  const bundleDir = path.join(REPO, 'dist', 'bundle');
  if (!fs.existsSync(path.join(bundleDir, 'tsvz.js'))) return 'no bundle (run scripts/build)';
  try {
    fs.accessSync(bundleDir, fs.constants.W_OK);
  } catch {
    return `${bundleDir} is not writable by this user: no code cache to test`;
  }
  return false;
}

describe('bin/tsvz: the bundle and its code cache', { skip: whyNoCacheTests() }, () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [TSVZ, ...args], { encoding: 'utf8' });
  const runsRecorded = (file: string) => fs.readFileSync(file).readUInt32LE(0);

  it('a command writes its cache over its first runs, then only reads it', () => {
    const file = path.join(CACHE_DIR, 'unfreeze.v8');
    for (let i = 0; i < 6; i++) assert.equal(run('unfreeze', '--help').status, 0);
    assert.equal(runsRecorded(file), 5);
    const before = fs.statSync(file).mtimeMs;
    const r = run('unfreeze', '--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /thaw a frozen container/);
    assert.equal(fs.statSync(file).mtimeMs, before, 'a settled cache is not rewritten');
  });

  it('a cache V8 rejects (corrupt, another build) is replaced, and the command still runs', () => {
    const file = path.join(CACHE_DIR, 'unfreeze.v8');
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    fs.writeFileSync(file, Buffer.concat([Buffer.from([5, 0, 0, 0]), Buffer.from('not a code cache')]));
    const r = run('unfreeze', '--help');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /thaw a frozen container/);
    assert.equal(runsRecorded(file), 1, 'rewritten from the start');
    assert.ok(fs.statSync(file).size > 1000);
  });

  it('a bundle older than the modules (tsc since the last build) is not run', () => {
    const main = path.join(REPO, 'dist', 'cli', 'main.js');
    const cache = path.join(CACHE_DIR, 'unfreeze.v8');
    const was = fs.statSync(main);
    try {
      fs.rmSync(cache, { force: true });
      const later = new Date(Date.now() + 60_000);
      fs.utimesSync(main, later, later);
      assert.equal(run('unfreeze', '--help').status, 0);
      assert.equal(fs.existsSync(cache), false, 'module by module: no code cache');
    } finally {
      fs.utimesSync(main, was.atime, was.mtime);
    }
    assert.equal(run('unfreeze', '--help').status, 0);
    assert.equal(fs.existsSync(cache), true, 'the bundle again');
  });

  it('TSVZ_BUNDLE=0 runs the same CLI module by module', () => {
    const r = spawnSync(process.execPath, [TSVZ, 'unfreeze', '--help'], { encoding: 'utf8', env: { ...process.env, TSVZ_BUNDLE: '0' } });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /thaw a frozen container/);
  });

  it("a Node's caches are its own: another Node's are neither read nor rewritten", () => {
    const other = path.join(REPO, 'dist', 'bundle', 'cache', 'v0.0.0', 'unfreeze.v8');
    fs.mkdirSync(path.dirname(other), { recursive: true });
    const garbage = Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.from('a cache of another Node')]);
    try {
      fs.writeFileSync(other, garbage);
      fs.rmSync(path.join(CACHE_DIR, 'unfreeze.v8'), { force: true });
      assert.equal(run('unfreeze', '--help').status, 0);
      assert.equal(runsRecorded(path.join(CACHE_DIR, 'unfreeze.v8')), 1, 'a cache of its own, from its first run');
      assert.deepEqual(fs.readFileSync(other), garbage);
    } finally {
      fs.rmSync(path.dirname(other), { recursive: true, force: true });
    }
  });

  it('--version names the version, the commit and the Node', () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const r = run('--version');
    assert.equal(r.status, 0);
    assert.match(r.stdout, new RegExp(`^tsvz ${version.replace(/\./g, '\\.')} \\(commit ([0-9a-f]{12}(-dirty)?|unknown), node ${process.version}\\)\n$`));
  });

  it('errors are one line on stderr with a non-zero exit, through the bundle too', () => {
    const r = run('frob');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "tsvz: unknown command 'frob'\n");
  });
});
