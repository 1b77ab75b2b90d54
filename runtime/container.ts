import fs = require('node:fs');
import { readJsonIfExists } from '../lib/atomic-file';
import type { ContainerCgroups } from './cgroups';
import type { ContainerConfig } from './config';
import { NotFoundError } from '../lib/errors';
import { withLock } from '../lib/lock';
import { validateName } from '../lib/names';
import { Root } from '../lib/root';
import { ContainerPaths } from './paths';
import { ContainerState, observeState, readState } from './state';

/** How long a second operation on the same container waits for the first. */
export const LOCK_WAIT_MS = 10_000;

/** One container: its files, its config and state, its lock. Verbs live in ops/. */
export class Container {
  readonly paths: ContainerPaths;
  private cachedConfig?: ContainerConfig;

  constructor(readonly root: Root, readonly name: string) {
    validateName(name);
    this.paths = new ContainerPaths(root.containerDir(name));
  }

  /** Open an existing container, or fail with "no such container". */
  static open(root: Root, name: string): Container {
    const c = new Container(root, name);
    if (!c.exists()) throw new NotFoundError(`no such container: ${name}`, 'see `tsvz list`');
    return c;
  }

  exists(): boolean {
    return fs.existsSync(this.paths.config);
  }

  get config(): ContainerConfig {
    if (!this.cachedConfig) {
      const cfg = readJsonIfExists<ContainerConfig>(this.paths.config);
      if (!cfg) throw new NotFoundError(`no such container: ${this.name}`);
      this.cachedConfig = cfg;
    }
    return this.cachedConfig;
  }

  /** The state as last written. */
  recordedState(): ContainerState {
    return readState(this.paths);
  }

  /** The state as it really is (a recorded "running" whose init died reads as stopped). */
  state(): ContainerState {
    return observeState(this.paths, this.recordedState());
  }

  /** Host-global key: cgroup leaf and veth name derive from it. */
  get key(): string {
    return this.root.containerKey(this.name);
  }

  cgroups(): ContainerCgroups {
    // Loaded on demand: `list` and `logs` never touch cgroups.
    const { ContainerCgroups: Cgroups } = require('./cgroups') as typeof import('./cgroups');
    return new Cgroups(this.key);
  }

  /** Run `body` holding this container's lock (two operations never interleave); busy after waiting `waitMs`. */
  locked<T>(body: () => Promise<T>, waitMs = LOCK_WAIT_MS): Promise<T> {
    this.root.ensure();
    return withLock(this.root.lockFile(this.name), `container ${this.name}`, waitMs, body);
  }
}
