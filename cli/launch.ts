import fs = require('node:fs');
import Module from 'node:module';
import path = require('node:path');
import sea = require('node:sea');
import vm = require('node:vm');
import { runKeyOf, usesRemoteBundle } from './command-names';

/**
 * Starting the CLI fast. bin/tsvz runs this, not main.ts: it loads the whole
 * CLI as one bundle (dist/bundle/tsvz.js, built by scripts/build) with V8's
 * code cache, so a command neither resolves ~100 module paths nor compiles
 * their source; what is left is Node's own start-up. Each command (and
 * subcommand: checkpoint-create) has its own cache
 * (dist/bundle/cache/<node version>/<command>.v8) holding the bytecode of
 * the functions it ran. Commands that talk to other hosts run from a second
 * bundle that also holds the gRPC library (tsvz-remote.js, see
 * scripts/bundle.js). V8 compiles a function only when it first
 * runs, and one run of `list` (an empty root) does not take the path of
 * another (running containers), so a cache is rewritten after each of the
 * command's first REFRESHES runs, growing to cover them all; after that it
 * is only read. Without a bundle, with one older than the modules (a tsc
 * run since the last scripts/build), or with TSVZ_BUNDLE=0 (stack traces
 * that name the source files), the CLI loads module by module.
 *
 * For the same reason the bundled code imports Node's modules with
 * `import fs = require('node:fs')`: `import * as fs` compiles to a copy of
 * the module's exports (tsc's __importStar), in every module that imports
 * it, which was a tenth of what `tsvz list` spent of its own.
 *
 * The release artifact (scripts/package.js) is Node's single executable:
 * this file is its main script and the bundle one of its assets, and the
 * caches go in cache/ beside the executable.
 *
 * A cache belongs to one Node (V8 rejects another's, and a command that
 * alternates between two would rewrite it on every run) and to one build of
 * the bundle (V8 checks only the source's length): the caches of a Node are
 * in a directory of their own, named after its version; scripts/build removes
 * them all, and the artifact's cache directory is named after its build too.
 */

type Main = (argv: string[]) => Promise<number>;

/** Where the bundle is, and where its code caches go. */
interface Bundle {
  /** The bundle's file name: its __filename, what its require() resolves from, and what stack traces show. */
  filename: string;
  source(): string;
  cacheDir: string;
}

const REFRESHES = 5;

/** A checkout: dist/bundle/NAME, beside this file's dist/cli/. */
function checkoutBundle(name: string): Bundle {
  const filename = path.resolve(__dirname, '..', 'bundle', name);
  return {
    filename,
    // The bundle is ASCII (esbuild's charset: 'ascii'): latin1 reads it exactly, faster than utf8.
    source: () => fs.readFileSync(filename, 'latin1'),
    cacheDir: path.join(path.dirname(filename), 'cache', process.version),
  };
}

/**
 * The release artifact: the bundle is the executable's asset; its file name
 * is lib/bundle/tsvz.js in the artifact's directory, so the bundle's
 * require() finds lib/node_modules (koffi's native module) and its
 * __dirname is two levels below that directory, as dist/bundle/ is below a
 * checkout's root (paths computed from __dirname hold in both).
 */
function artifactBundle(name: string): Bundle {
  const dir = path.dirname(process.execPath);
  const build = sea.getAsset('build-id', 'utf8');
  return {
    filename: path.join(dir, 'lib', 'bundle', name),
    source: () => Buffer.from(sea.getRawAsset(name) as ArrayBuffer).toString('latin1'),
    cacheDir: path.join(dir, 'cache', `${build}-${process.version}`),
  };
}

export async function launch(argv: string[]): Promise<number> {
  const remote = usesRemoteBundle(argv);
  const name = remote ? 'tsvz-remote.js' : 'tsvz.js';
  const bundle = sea.isSea() ? artifactBundle(name) : checkoutBundle(name);
  if (!sea.isSea()) {
    // TSVZ_BUNDLE=0: module by module, for readable stack traces (--debug).
    if (process.env.TSVZ_BUNDLE === '0') return (require('./main') as { main: Main }).main(argv);
    // A tsc run since the last scripts/build left the bundle behind the modules: run those.
    if (!isFresh(bundle.filename, path.join(__dirname, 'main.js'))) return (require('./main') as { main: Main }).main(argv);
  }
  // Keys of the two bundles differ (help and errors: "other" and "other@remote").
  const key = runKeyOf(argv) ?? (remote ? 'other@remote' : 'other');
  const cacheFile = path.join(bundle.cacheDir, `${key}.v8`);
  const cache = readCache(cacheFile);
  const script = new vm.Script(Module.wrap(bundle.source()), { filename: bundle.filename, cachedData: cache?.data });
  const module = { exports: {} as { main: Main } };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper(module.exports, Module.createRequire(bundle.filename), module, bundle.filename, path.dirname(bundle.filename));
  const code = await module.exports.main(argv);
  const runs = !cache || script.cachedDataRejected ? 0 : cache.runs;
  if (runs < REFRESHES) writeCache(cacheFile, runs + 1, script);
  return code;
}

/** Does `bundle` exist and come from a build no older than `module`? */
function isFresh(bundle: string, module: string): boolean {
  try {
    return fs.statSync(bundle).mtimeMs >= fs.statSync(module).mtimeMs;
  } catch {
    return false;
  }
}

/** A cache file: how many runs it has seen (4 bytes, little-endian), then V8's data. */
function readCache(file: string): { runs: number; data: Buffer } | undefined {
  try {
    const raw = fs.readFileSync(file);
    return raw.length > 4 ? { runs: raw.readUInt32LE(0), data: raw.subarray(4) } : undefined;
  } catch {
    return undefined;
  }
}

/** Best effort: an install the user can't write to just runs without a cache. */
function writeCache(file: string, runs: number, script: vm.Script): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const header = Buffer.alloc(4);
    header.writeUInt32LE(runs);
    fs.writeFileSync(tmp, Buffer.concat([header, script.createCachedData()]));
    fs.renameSync(tmp, file);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}
