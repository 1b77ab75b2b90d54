'use strict';
/**
 * Bundles the CLI (dist/cli/main.js and everything it can load) into
 * dist/bundle/tsvz.js, which bin/tsvz loads through cli/launch. koffi is a
 * native addon and stays outside. Usage: node scripts/bundle.js [BUILD_DIR] (default dist).
 *
 * commander requires child_process at load time, only to run git-style
 * executable subcommands, which tsvz has none of; in the bundle it gets a
 * stand-in that loads child_process on first use, so a command that never
 * spawns (list, info, ...) does not pay for it and for the stream and net
 * modules it pulls in.
 *
 * protobufjs loads long.js, if it can, for 64-bit fields; loading it costs
 * a few ms (it compiles a WebAssembly module). tsvz turns every 64-bit value
 * into a Number anyway (CRIU's RPC has none; its images' page counts and
 * addresses), which protobufjs does by itself without long.js: the bundle
 * leaves it out.
 *
 * Before bundling it writes BUILD_DIR/cli/build-info.json (the package's version
 * and the commit, "-dirty" when tracked files differ from it), which main.ts
 * reads for `tsvz --version` and the bundle inlines. After it, it writes
 * BUILD_DIR/bundle/packages.json: the npm packages the bundle holds code of
 * (the release artifact ships their licenses).
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const repo = path.resolve(__dirname, '..');
const out = path.resolve(repo, process.argv[2] ?? 'dist');

const lazyChildProcessForCommander = {
  name: 'lazy-child-process-for-commander',
  setup(build) {
    build.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      args.importer.includes(`${path.sep}node_modules${path.sep}commander${path.sep}`)
        ? { path: 'lazy-child-process', namespace: 'tsvz' }
        : undefined);
    build.onLoad({ filter: /^lazy-child-process$/, namespace: 'tsvz' }, () => ({
      contents: "module.exports = new Proxy({}, { get: (_, key) => require('node:child_process')[key] });",
      loader: 'js',
    }));
  },
};

const withoutLong = {
  name: 'without-long',
  setup(build) {
    build.onResolve({ filter: /^long$/ }, () => ({ path: 'no-long', namespace: 'tsvz' }));
    // protobufjs's require('long') is in a try: it then works with Numbers.
    build.onLoad({ filter: /^no-long$/, namespace: 'tsvz' }, () => ({
      contents: "throw new Error('long.js is not in the bundle');",
      loader: 'js',
    }));
  },
};

function gitCommit() {
  const git = (...args) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return git('rev-parse', '--short=12', 'HEAD') + (git('status', '--porcelain', '--untracked-files=no') ? '-dirty' : '');
  } catch {
    return 'unknown'; // not a git checkout
  }
}
const { version } = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
fs.mkdirSync(path.join(out, 'cli'), { recursive: true });
fs.writeFileSync(path.join(out, 'cli', 'build-info.json'), `${JSON.stringify({ version, commit: gitCommit() })}\n`);

esbuild.build({
  entryPoints: [path.join(out, 'cli', 'main.js')],
  outfile: path.join(out, 'bundle', 'tsvz.js'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node22',
  external: ['koffi'],
  // A build dir outside the repo (the VM lane's) still resolves the repo's packages.
  nodePaths: [path.join(repo, 'node_modules')],
  plugins: [lazyChildProcessForCommander, withoutLong],
  logLevel: 'warning',
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
  legalComments: 'none',
  metafile: true,
}).then((result) => {
  const packages = new Set();
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.add(m[1]);
  }
  fs.writeFileSync(path.join(out, 'bundle', 'packages.json'), `${JSON.stringify([...packages].sort())}\n`);
}).catch((err) => {
  // esbuild has printed its own errors already.
  if (!Array.isArray(err?.errors)) console.error(err);
  process.exit(1);
});
