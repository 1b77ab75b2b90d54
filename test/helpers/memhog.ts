import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from './cli';

let built: string | undefined;

/** test/fixtures/memhog.c built statically (once per process), to copy into a rootfs. */
export function memhogBinary(): string {
  if (built) return built;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-memhog-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'memhog');
  const r = spawnSync('cc', ['-O2', '-static', '-o', out, path.join(REPO, 'test', 'fixtures', 'memhog.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot build memhog: ${r.stderr}`);
  built = out;
  return out;
}

/** Put memhog into a container's rootfs as /usr/bin/memhog. */
export function installMemhog(rootfs: string): void {
  fs.copyFileSync(memhogBinary(), path.join(rootfs, 'usr/bin/memhog'));
  fs.chmodSync(path.join(rootfs, 'usr/bin/memhog'), 0o755);
}

export function readHex(file: string): string | undefined {
  try { return fs.readFileSync(file, 'utf8').trim(); } catch { return undefined; }
}
