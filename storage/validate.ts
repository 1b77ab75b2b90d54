import fs = require('node:fs');
import path = require('node:path');
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { PoolSpec } from './driver';

/** Volumes carry container names; snapshots are named by the same rules (lib/names.ts). */
export function validateVolumeName(vol: string): string {
  return validateName(vol, 'volume');
}

export function validateSnapshotName(snap: string): string {
  return validateName(snap, 'snapshot');
}

/**
 * The checks every driver shares: a valid pool name, an absolute root, a
 * positive whole --size of at least `minSize`, not both --size and --source
 * unless the driver allows it.
 */
export function validatePoolSpec(spec: PoolSpec, minSize: number, opts: { sizeWithSource?: boolean } = {}): void {
  validateName(spec.name, 'pool');
  if (!spec.rootDir || !path.isAbsolute(spec.rootDir)) throw new InvalidArgumentError(`pool root "${spec.rootDir}" must be an absolute path`);
  if (spec.size !== undefined) {
    if (!Number.isSafeInteger(spec.size) || spec.size <= 0) {
      throw new InvalidArgumentError(`pool size must be greater than zero (got ${spec.size})`, 'use e.g. --size 4G');
    }
    if (spec.size < minSize) {
      throw new InvalidArgumentError(`pool size ${spec.size} is too small for a ${spec.driver} pool`, `use at least ${minSize / 1024 ** 2}M`);
    }
  }
  if (spec.source !== undefined && spec.source.trim() === '') throw new InvalidArgumentError('pool source is empty');
  if (spec.source !== undefined && spec.size !== undefined && !opts.sizeWithSource) {
    throw new InvalidArgumentError(`a ${spec.driver} pool takes either --source or --size, not both`);
  }
}

/** <rootDir>/pools/<name>: where a pool keeps its image and mounts. Refuses one that exists. */
export function claimPoolDir(spec: PoolSpec): string {
  const dir = poolDir(spec.rootDir, spec.name);
  if (fs.existsSync(dir)) {
    throw new AlreadyExistsError(`pool ${spec.name} already exists (${dir})`, 'pick another name or destroy that pool');
  }
  return dir;
}

export function poolDir(rootDir: string, name: string): string {
  return path.join(rootDir, 'pools', name);
}

/** A --source directory must exist, be a directory and be empty (we never adopt someone's files). */
export function checkSourceDir(source: string, what: string): string {
  const dir = path.resolve(source);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new NotFoundError(`pool source ${dir} does not exist`, `create it first or use --size for a ${what} pool under the root`);
  }
  if (!st.isDirectory()) throw new InvalidArgumentError(`pool source ${dir} is not a directory`);
  if (fs.readdirSync(dir).length > 0) throw new InvalidArgumentError(`pool source ${dir} is not empty`, 'use an empty directory');
  return dir;
}

/** pool create (and doctor) refuse a driver whose tools or kernel support are missing, saying what. */
export async function requireUsable(driver: { name: string; missing(): Promise<string[]> }): Promise<void> {
  const missing = await driver.missing();
  if (missing.length > 0) {
    throw new NotSupportedError(`storage driver ${driver.name} cannot be used on this host: ${missing.join('; ')}`, 'run `tsvz doctor` and scripts/setup-host');
  }
}
