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
 */
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
  target: 'node20',
  external: ['koffi', '@peculiar/x509', '@abraham/reflection'],
  // A build dir outside the repo (the VM lane's) still resolves the repo's packages.
  nodePaths: [path.join(repo, 'node_modules')],
  plugins: [lazyChildProcessForCommander, withoutLong, withoutProtoLoader, ...plugins],
  logLevel: 'warning',
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
  legalComments: 'none',
});

Promise.all([bundle('tsvz.js', [withoutRemoteLibraries]), bundle('tsvz-remote.js', [])]).catch(() => process.exit(1));
