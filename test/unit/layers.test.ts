import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

/**
 * The library's layers, each importing only those below it (docs/architecture.md).
 * Every import counts: static, require(), import() and `typeof import()`, so a
 * lazy load cannot hide an arrow that points up.
 */
const REPO = path.resolve(__dirname, '..', '..', '..');

const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: [],
  archive: ['lib'],
  runtime: ['lib', 'archive'],
  storage: ['lib', 'archive'],
  checkpoint: ['lib', 'archive', 'runtime', 'storage'],
  ops: ['lib', 'archive', 'runtime', 'storage', 'checkpoint'],
  daemon: ['lib', 'archive', 'runtime', 'storage', 'checkpoint', 'ops'],
  migrate: ['lib', 'archive', 'runtime', 'storage', 'checkpoint', 'ops', 'daemon'],
  backup: ['lib', 'archive', 'runtime', 'storage', 'checkpoint', 'ops', 'daemon', 'migrate'],
  cli: ['lib', 'archive', 'runtime', 'storage', 'checkpoint', 'ops', 'daemon', 'migrate', 'backup'],
};
/** Generated code (protobuf encoders) is data any layer may read. */
const SHARED = new Set(['proto']);

function sourcesOf(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourcesOf(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative specifiers of every import form in a TypeScript source. */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  const re = /(?:\bfrom\s+|\brequire\(\s*|\bimport\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) found.push(m[1]);
  return found;
}

test('the import scanner sees every form of import', () => {
  const src = [
    "import { a } from '../lib/a';",
    "import type { B } from '../lib/b';",
    "const c = require('../lib/c') as typeof import('../lib/c');",
    "const d = await import('../lib/d');",
    "import '../lib/e';",
  ].join('\n');
  assert.deepEqual(importsOf(src).sort(), ['../lib/a', '../lib/b', '../lib/c', '../lib/c', '../lib/d', '../lib/e']);
});

test('each layer imports only the layers below it', () => {
  const violations: string[] = [];
  for (const layer of Object.keys(MAY_IMPORT)) {
    const dir = path.join(REPO, layer);
    if (!fs.existsSync(dir)) continue;
    for (const file of sourcesOf(dir)) {
      for (const spec of importsOf(fs.readFileSync(file, 'utf8'))) {
        const target = path.relative(REPO, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
        if (target === layer || SHARED.has(target)) continue;
        if (!MAY_IMPORT[layer].includes(target)) violations.push(`${path.relative(REPO, file)} imports ${spec} (${layer} -> ${target})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('the layers are the folders the build compiles', () => {
  const tsconfig = JSON.parse(fs.readFileSync(path.join(REPO, 'tsconfig.json'), 'utf8')) as { include: string[] };
  const folders = tsconfig.include.map((p) => p.split('/')[0]);
  for (const folder of folders) assert.ok(fs.existsSync(path.join(REPO, folder)), `tsconfig.json lists ${folder}/, which does not exist`);
  for (const layer of Object.keys(MAY_IMPORT)) {
    if (fs.existsSync(path.join(REPO, layer))) assert.ok(folders.includes(layer), `${layer}/ exists but tsconfig.json does not compile it`);
  }
});
