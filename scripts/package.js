'use strict';
/**
 * The release artifact, OUT/tsvz-VERSION-linux-x64.tar.gz (and its .sha256),
 * from what scripts/build and `make -C native` made (scripts/package runs
 * them first):
 *
 *   tsvz-VERSION-linux-x64/
 *     tsvz          Node's single executable application: the binary of the
 *                   Node running this (stripped), with a blob holding
 *                   cli/launch.js as its main script (and V8's code cache for
 *                   it) and, as assets, the bundle (dist/bundle/tsvz.js) and
 *                   its build id (cli/launch.ts reads them)
 *     lib/          tsvz-monitor and tsvz-exec (runtime/paths.ts), and koffi's
 *                   native module where the bundle's require() finds it
 *     proto/        the .proto files read at run time, if any (those scripts/build
 *                   compiles are in the bundle)
 *     tsvz.service  a systemd unit for `tsvz daemon`
 *     INSTALL, licenses/
 *
 * Why one executable and not a Node binary with the bundle beside it:
 * docs/release.md. Runs on Node 24, the Node the artifact carries.
 *
 * Usage: node scripts/package.js [--out DIR]   (default dist/release)
 */
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const REPO = path.resolve(__dirname, '..');
const DIST = path.join(REPO, 'dist');
const NODE_MAJOR = 24;
// Node's fixed sentinel: the binary looks for it to know a blob was injected.
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const KOFFI_NATIVE = path.join('node_modules', '@koromix', 'koffi-linux-x64', 'linux_x64', 'koffi.node');
/** Packages the bundles load from node_modules instead of holding them (scripts/bundle.js's EXTERNAL, koffi aside). */
const SHIPPED_PACKAGES = ['@peculiar/x509', '@abraham/reflection'];

/** A package and, recursively, what it depends on. */
function withDependencies(names) {
  const seen = new Set();
  const walk = (name) => {
    if (seen.has(name)) return;
    seen.add(name);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8'));
    for (const dep of Object.keys(pkg.dependencies ?? {})) walk(dep);
  };
  names.forEach(walk);
  return [...seen].sort();
}

function fail(message) {
  process.stderr.write(`package: ${message}\n`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (r.error || r.status !== 0) {
    fail(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status ?? r.signal}`}):\n${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}

function parseArgs(argv) {
  let out = path.join(DIST, 'release');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && i + 1 < argv.length) out = path.resolve(argv[++i]);
    else fail(`usage: node scripts/package.js [--out DIR] (not "${argv[i]}")`);
  }
  return { out };
}

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return fail(`${path.relative(REPO, file)} missing: run scripts/build (npm run package builds first)`);
  }
}

function copy(from, to, mode) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, mode);
}

/** The main script of the executable: cli/launch.js and what it imports, without the module-by-module CLI it never runs there. */
async function bundleLauncher(file) {
  const noModules = {
    name: 'no-modules',
    setup(build) {
      build.onResolve({ filter: /^\.\/main$/ }, () => ({ path: './main', external: true }));
    },
  };
  await esbuild.build({
    stdin: {
      contents: "require('./launch.js').launch(process.argv).then((code) => process.exit(code));",
      resolveDir: path.join(DIST, 'cli'),
      sourcefile: 'sea-main.js',
      loader: 'js',
    },
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${NODE_MAJOR}`,
    plugins: [noModules],
    logLevel: 'warning',
    minifyWhitespace: true,
    minifySyntax: true,
    charset: 'ascii',
    legalComments: 'none',
  });
}

/** Node's license, wherever this Node's install keeps it. */
function nodeLicense() {
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'LICENSE'), // scripts/setup-host's, and nodejs.org's tarballs
    '/usr/share/doc/nodejs/copyright', // Debian's
  ];
  return candidates.find((f) => fs.existsSync(f)) ?? fail(`no LICENSE for ${process.execPath} (looked at ${candidates.join(', ')})`);
}

/** licenses/<package>.txt for Node and every npm package the artifact holds code of. */
function copyLicenses(dir) {
  copy(nodeLicense(), path.join(dir, 'node.txt'), 0o644);
  const packages = JSON.parse(fs.readFileSync(path.join(DIST, 'bundle', 'packages.json'), 'utf8'));
  // koffi's native module comes from @koromix/koffi-linux-x64, which has no license file of its own: it is koffi's.
  for (const name of [...new Set([...packages, ...withDependencies(SHIPPED_PACKAGES), 'koffi'])]) {
    const pkgDir = path.join(REPO, 'node_modules', name);
    const file = fs.readdirSync(pkgDir).find((f) => /^(licen[cs]e|copying)/i.test(f));
    const target = path.join(dir, `${name.replace('/', '__')}.txt`);
    if (file) copy(path.join(pkgDir, file), target, 0o644);
    else {
      const { license } = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
      fs.writeFileSync(target, `${name}: ${license ?? 'no license stated'} (the package ships no license file)\n`);
    }
  }
}

/** Every .proto under proto/ that scripts/build does not compile into the bundle. */
function runtimeProtos() {
  const found = [];
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(REPO, 'proto', rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.proto') && !fs.existsSync(path.join(DIST, 'proto', r.replace(/\.proto$/, '.js')))) found.push(r);
    }
  };
  if (fs.existsSync(path.join(REPO, 'proto'))) walk('');
  return found;
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

async function main() {
  const t0 = Date.now();
  const { out } = parseArgs(process.argv.slice(2));
  if (Number(process.versions.node.split('.')[0]) !== NODE_MAJOR) {
    fail(`the artifact carries Node ${NODE_MAJOR} LTS, and this is ${process.version}: ` +
      'TSVZ_NODE_INSTALL=1 bash scripts/setup-host installs it (scripts/node-env then puts it first on PATH)');
  }
  const bundle = path.join(DIST, 'bundle', 'tsvz.js');
  if (mtime(bundle) < Math.max(mtime(path.join(DIST, 'cli', 'main.js')), mtime(path.join(DIST, 'cli', 'launch.js')))) {
    fail('dist/bundle/tsvz.js is older than the modules (a tsc since the last scripts/build): run scripts/build');
  }
  const { version, commit } = JSON.parse(fs.readFileSync(path.join(DIST, 'cli', 'build-info.json'), 'utf8'));
  const name = `tsvz-${version}-linux-x64`;
  fs.mkdirSync(out, { recursive: true });
  const work = fs.mkdtempSync(path.join(out, '.package-'));
  try {
    const stage = path.join(work, name);
    fs.mkdirSync(stage);

    // 1. The blob: the launcher, the bundle and the id the code caches are kept under.
    const launcher = path.join(work, 'sea-main.js');
    await bundleLauncher(launcher);
    const buildId = path.join(work, 'build-id');
    fs.writeFileSync(buildId, crypto.createHash('sha256').update(sha256(bundle)).update(sha256(path.join(DIST, 'bundle', 'tsvz-remote.js'))).digest('hex').slice(0, 16));
    const blob = path.join(work, 'sea.blob');
    const config = path.join(work, 'sea-config.json');
    fs.writeFileSync(config, JSON.stringify({
      main: launcher,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets: { 'tsvz.js': bundle, 'tsvz-remote.js': path.join(DIST, 'bundle', 'tsvz-remote.js'), 'build-id': buildId },
    }));
    run(process.execPath, ['--experimental-sea-config', config], { cwd: work });

    // 2. The executable: this Node, without its debug information and symbols
    //    (a sixth of its size; nothing at run time reads them), and the blob.
    const exe = path.join(stage, 'tsvz');
    copy(process.execPath, exe, 0o755);
    const strip = spawnSync('strip', ['--strip-all', exe], { encoding: 'utf8' });
    if (strip.error || strip.status !== 0) process.stderr.write(`package: strip failed, the executable keeps its symbols: ${strip.error?.message ?? strip.stderr}\n`);
    run(process.execPath, [path.join(REPO, 'node_modules', 'postject', 'dist', 'cli.js'), exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);

    // 3. What it runs and loads beside it.
    for (const helper of ['tsvz-monitor', 'tsvz-exec']) {
      const built = path.join(REPO, 'native', 'build', helper);
      if (!fs.existsSync(built)) fail(`${path.relative(REPO, built)} missing: run make -C native`);
      copy(built, path.join(stage, 'lib', helper), 0o755);
    }
    copy(path.join(REPO, KOFFI_NATIVE), path.join(stage, 'lib', KOFFI_NATIVE), 0o644);
    // The X.509 library the daemon and `trust`/`remote` load beside the remote bundle.
    for (const pkg of withDependencies(SHIPPED_PACKAGES)) {
      fs.cpSync(path.join(REPO, 'node_modules', pkg), path.join(stage, 'lib', 'node_modules', pkg), { recursive: true, dereference: true });
    }
    for (const proto of runtimeProtos()) copy(path.join(REPO, 'proto', proto), path.join(stage, 'proto', proto), 0o644);
    copy(path.join(REPO, 'packaging', 'tsvz.service'), path.join(stage, 'tsvz.service'), 0o644);
    const install = fs.readFileSync(path.join(REPO, 'packaging', 'INSTALL'), 'utf8')
      .replaceAll('@VERSION@', version).replaceAll('@COMMIT@', commit).replaceAll('@NODE@', process.version);
    fs.writeFileSync(path.join(stage, 'INSTALL'), install, { mode: 0o644 });
    copyLicenses(path.join(stage, 'licenses'));

    // 4. It runs, as what it says it is.
    const expected = `tsvz ${version} (commit ${commit}, node ${process.version})\n`;
    const said = run(exe, ['--version'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
    if (said !== expected) fail(`${name}/tsvz --version says ${JSON.stringify(said)}, not ${JSON.stringify(expected)}`);
    fs.rmSync(path.join(stage, 'cache'), { recursive: true, force: true });

    // 5. The tarball: root-owned entries, in name order, dated by the commit.
    let date = Math.floor(Date.now() / 1000);
    const ct = spawnSync('git', ['-C', REPO, 'log', '-1', '--format=%ct'], { encoding: 'utf8' });
    if (ct.status === 0 && /^\d+$/.test(ct.stdout.trim())) date = Number(ct.stdout.trim());
    const tarball = path.join(out, `${name}.tar.gz`);
    const tmp = path.join(work, `${name}.tar.gz`);
    run('tar', ['-C', work, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', `--mtime=@${date}`, '-czf', tmp, name]);
    fs.renameSync(tmp, tarball);
    fs.writeFileSync(`${tarball}.sha256`, `${sha256(tarball)}  ${path.basename(tarball)}\n`);
    const mib = (f) => (fs.statSync(f).size / 1048576).toFixed(1);
    process.stdout.write(`package: ${path.relative(process.cwd(), tarball) || tarball} (${mib(tarball)} MiB; tsvz ${mib(exe)} MiB; ` +
      `${said.trim()}; ${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => fail(err instanceof Error ? err.stack : String(err)));
