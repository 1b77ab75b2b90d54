import fs = require('node:fs');
import Module from 'node:module';
import path = require('node:path');
import vm = require('node:vm');
import { runKeyOf, usesRemoteBundle } from './command-names';

/**
 * Starting the CLI fast. bin/tsvz runs this, not main.ts: it loads the whole
 * CLI as one bundle (dist/bundle/tsvz.js, built by scripts/build) with V8's
 * code cache, so a command neither resolves ~100 module paths nor compiles
 * their source; what is left is Node's own start-up. Each command (and
 * subcommand: checkpoint-create) has its own cache
 * (dist/bundle/cache/<command>.v8) holding the bytecode of the functions
 * it ran. Commands that talk to other hosts run from a second bundle that
 * also holds the gRPC and X.509 libraries (tsvz-remote.js, see
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
 */

type Main = (argv: string[]) => Promise<number>;

const BUNDLE_DIR = path.resolve(__dirname, '..', 'bundle');
const REFRESHES = 5;

export async function launch(argv: string[]): Promise<number> {
  // TSVZ_BUNDLE=0: module by module, for readable stack traces (--debug).
  if (process.env.TSVZ_BUNDLE === '0') return (require('./main') as { main: Main }).main(argv);
  const remote = usesRemoteBundle(argv);
  const BUNDLE = path.join(BUNDLE_DIR, remote ? 'tsvz-remote.js' : 'tsvz.js');
  // A tsc run since the last scripts/build left the bundle behind the modules: run those.
  if (!isFresh(BUNDLE, path.join(__dirname, 'main.js'))) return (require('./main') as { main: Main }).main(argv);
  // The bundle is ASCII (esbuild's charset: 'ascii'): latin1 reads it exactly, faster than utf8.
  const source = fs.readFileSync(BUNDLE, 'latin1');
  // Keys of the two bundles differ (help and errors: "other" and "other@remote").
  const key = runKeyOf(argv) ?? (remote ? 'other@remote' : 'other');
  const cacheFile = path.join(BUNDLE_DIR, 'cache', `${key}.v8`);
  const cache = readCache(cacheFile);
  const script = new vm.Script(Module.wrap(source), { filename: BUNDLE, cachedData: cache?.data });
  const bundle = { exports: {} as { main: Main } };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper(bundle.exports, Module.createRequire(BUNDLE), bundle, BUNDLE, path.dirname(BUNDLE));
  const code = await bundle.exports.main(argv);
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
