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
 * Two bundles: dist/bundle/tsvz-remote.js is the whole CLI; dist/bundle/tsvz.js
 * leaves out the gRPC library (a stand-in that throws if reached), which
 * only the daemon, `trust`, `remote` and `--remote` commands use
 * (cli/command-names.ts's usesRemoteBundle): it doubled the bundle, and
 * reading the larger file cost every `tsvz list` ~4 ms. The X.509 library
 * is in neither: it makes a host's certificate once in the host's life and
 * is then loaded from node_modules. grpc-js's proto-loader (for channelz
 * and ORCA, which tsvz does not serve) is left out of both.
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

/** Loaded from node_modules, not bundled: koffi (a native addon), and the X.509 library (see docs/architecture.md). scripts/package.js ships them. */
const EXTERNAL = ['koffi', '@peculiar/x509', '@abraham/reflection'];

/** Libraries only the remote bundle holds. */
const REMOTE_ONLY = /^@grpc\/grpc-js$/;

const withoutProtoLoader = {
  name: 'without-proto-loader',
  setup(build) {
    build.onResolve({ filter: /^@grpc\/proto-loader$/ }, () => ({ path: 'no-proto-loader', namespace: 'tsvz' }));
    build.onLoad({ filter: /^no-proto-loader$/, namespace: 'tsvz' }, () => ({
      contents: "throw new Error('@grpc/proto-loader is not in the bundle: tsvz serves no channelz or ORCA');",
      loader: 'js',
    }));
  },
};

const withoutRemoteLibraries = {
  name: 'without-remote-libraries',
  setup(build) {
    build.onResolve({ filter: REMOTE_ONLY }, (args) => ({ path: args.path, namespace: 'tsvz-remote-only' }));
    build.onLoad({ filter: /.*/, namespace: 'tsvz-remote-only' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is in dist/bundle/tsvz-remote.js only: cli/command-names.ts's usesRemoteBundle must name this command`)});`,
      loader: 'js',
    }));
  },
};

const bundle = (file, plugins) => esbuild.build({
  entryPoints: [path.join(out, 'cli', 'main.js')],
  outfile: path.join(out, 'bundle', file),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node22',
  external: EXTERNAL,
  // A build dir outside the repo (the VM lane's) still resolves the repo's packages.
  nodePaths: [path.join(repo, 'node_modules')],
  plugins: [lazyChildProcessForCommander, withoutLong, withoutProtoLoader, ...plugins],
  logLevel: 'warning',
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
  legalComments: 'none',
  metafile: true,
});

/** The packages a bundle holds (scripts/package.js ships their licenses). */
function packagesOf(result) {
  const packages = new Set();
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.add(m[1]);
  }
  return packages;
}

Promise.all([bundle('tsvz.js', [withoutRemoteLibraries]), bundle('tsvz-remote.js', [])]).then((results) => {
  const packages = new Set(results.flatMap((r) => [...packagesOf(r)]));
  fs.writeFileSync(path.join(out, 'bundle', 'packages.json'), `${JSON.stringify([...packages].sort())}
`);
}).catch((err) => {
  // esbuild has printed its own errors already.
  if (!Array.isArray(err?.errors)) console.error(err);
  process.exit(1);
});
