import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError } from './errors';
import { shortHash } from './hash';

export const DEFAULT_ROOT = '/var/lib/tsvz';

/**
 * Where tsvz keeps everything. One root per "host": tests and several
 * simulated hosts on one machine each use their own and never collide.
 */
export class Root {
  readonly dir: string;
  private cachedId?: string;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  /** Short id of this root, mixed into host-global names (cgroups, veths); empty for the default root. */
  get id(): string {
    if (this.cachedId === undefined) this.cachedId = this.dir === DEFAULT_ROOT ? '' : shortHash(this.dir);
    return this.cachedId;
  }

  /** The root named by --root, TSVZ_ROOT or the default; a non-directory there is refused at once. */
  static fromOptions(rootOption?: string): Root {
    const root = new Root(rootOption || process.env.TSVZ_ROOT || DEFAULT_ROOT);
    let st: fs.Stats | undefined;
    try { st = fs.statSync(root.dir); } catch { /* created on first write */ }
    if (st && !st.isDirectory()) throw new InvalidArgumentError(`root ${root.dir} is not a directory`, 'pass --root DIR or set TSVZ_ROOT');
    return root;
  }

  /** Make sure the root exists and is a directory (a file there is a clear error). */
  ensure(): this {
    try {
      const st = fs.statSync(this.dir);
      if (!st.isDirectory()) throw new InvalidArgumentError(`root ${this.dir} is not a directory`, 'pass --root DIR or set TSVZ_ROOT');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o711 });
    }
    for (const sub of ['containers', 'locks', 'cache']) fs.mkdirSync(path.join(this.dir, sub), { recursive: true, mode: 0o700 });
    return this;
  }

  get containersDir(): string { return path.join(this.dir, 'containers'); }
  get locksDir(): string { return path.join(this.dir, 'locks'); }
  get cacheDir(): string { return path.join(this.dir, 'cache'); }

  containerDir(name: string): string { return path.join(this.containersDir, name); }
  lockFile(name: string): string { return path.join(this.locksDir, `${name}.lock`); }
  /** Journals of a container's (or pool's) operations in progress (lib/intent.ts), beside their lock. */
  intentsDir(scope: 'containers' | 'pools', name: string): string { return path.join(this.dir, 'intents', scope, name); }

  /** Unique per (root, container): names the container's cgroup leaf and host veth. */
  containerKey(name: string): string { return this.id ? `${this.id}-${name}` : name; }
}
