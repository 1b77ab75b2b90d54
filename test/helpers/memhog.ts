import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from './cli';

const built = new Map<string, string>();
let dir: string | undefined;

/** test/fixtures/NAME.c built statically (once per process), to copy into any rootfs. */
export function fixtureBinary(name: string): string {
  const cached = built.get(name);
  if (cached) return cached;
  if (!dir) {
    const made = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-fixtures-'));
    process.on('exit', () => fs.rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  const out = path.join(dir, name);
  const r = spawnSync('cc', ['-O2', '-static', '-o', out, path.join(REPO, 'test', 'fixtures', `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot build ${name}: ${r.stderr}`);
  built.set(name, out);
  return out;
}

/** Put a fixture into a container's rootfs as /usr/bin/NAME. */
export function installFixture(rootfs: string, name: string): void {
  const dest = path.join(rootfs, 'usr/bin', name);
  fs.copyFileSync(fixtureBinary(name), dest);
  fs.chmodSync(dest, 0o755);
}

/** memhog (test/fixtures/memhog.c) as /usr/bin/memhog. */
export function installMemhog(rootfs: string): void {
  installFixture(rootfs, 'memhog');
}

export function memhogBinary(): string {
  return fixtureBinary('memhog');
}

export function readHex(file: string): string | undefined {
  try { return fs.readFileSync(file, 'utf8').trim(); } catch { return undefined; }
}
