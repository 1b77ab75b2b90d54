import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeJsonAtomic } from '../../lib/atomic-file';
import { InvalidArgumentError, NotSupportedError } from '../../lib/errors';
import { CriuClient } from './client';

export interface CriuVersion {
  major: number;
  minor: number;
  sublevel: number;
  gitid?: string;
  name?: string;
}

/** "4.1.1" → {4, 1, 1}; "4.1" → {4, 1, 0}. */
export function parseVersion(text: string): CriuVersion {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`not a CRIU version: ${JSON.stringify(text)}`, 'expected e.g. 4.1 or 4.1.1');
  return { major: Number(m[1]), minor: Number(m[2]), sublevel: Number(m[3] ?? 0) };
}

/** Negative, zero or positive as a is older than, the same as or newer than b. */
export function compareVersions(a: CriuVersion, b: CriuVersion): number {
  return a.major - b.major || a.minor - b.minor || a.sublevel - b.sublevel;
}

export function formatVersion(v: CriuVersion): string {
  return `${v.major}.${v.minor}.${v.sublevel}`;
}

/**
 * Asks CRIU its version over RPC (what will actually serve us, not what is on
 * PATH) and fails unless it is at least `min`. Debian's 3.17 can't dump on
 * kernels ≥ 6.13; 4.1 can.
 */
export async function requireCriu(min = '4.1', client = new CriuClient(), cacheDir?: string): Promise<CriuVersion> {
  const version = cacheDir ? await cachedVersion(client, cacheDir) : await client.version();
  if (compareVersions(version, parseVersion(min)) < 0) {
    throw new NotSupportedError(
      `CRIU ${formatVersion(version)} is too old: tsvz needs ${min} or newer (${client.criuPath})`,
      'run scripts/setup-host to build a recent CRIU',
    );
  }
  return version;
}

/**
 * The version of this CRIU binary, asked over RPC once and remembered in
 * `cacheDir`: a version request is a whole `criu swrk` on every checkpoint
 * and restore otherwise. The key is the file's identity, not just its path:
 * device, inode, size, and mtime and ctime in nanoseconds. A replaced
 * binary is a new inode (or, rewritten in place, a new ctime, which no
 * one can set back), so the cache never answers for it.
 */
async function cachedVersion(client: CriuClient, cacheDir: string): Promise<CriuVersion> {
  let key: string | undefined;
  try {
    const st = fs.statSync(client.criuPath, { bigint: true });
    key = `${client.criuPath}:${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return client.version(); // found on PATH, or missing: let CRIU answer (or fail)
  }
  const file = path.join(cacheDir, 'criu-version.json');
  const cached = readJsonIfExists<{ key: string; version: CriuVersion }>(file);
  if (cached?.key === key) return cached.version;
  const version = await client.version();
  fs.mkdirSync(cacheDir, { recursive: true });
  await writeJsonAtomic(file, { key, version });
  return version;
}
