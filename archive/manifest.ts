import { CorruptDataError, LimitError } from '../lib/errors';
import { refusalError, type Voice } from './refusal';
import type { TarEntry } from './tar-reader';

/**
 * An archive's manifest: the list of files it carries, each with its size
 * and sha256, sent ahead of them so a receiver verifies every file as it
 * streams in. A manifest comes from the archive, so it is hostile input
 * too: its shape, names and totals are checked before anything uses them.
 * (Unsigned: this catches corruption and edited files, not a forger who
 * rewrites the manifest as well.)
 */

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

export interface FileListRules {
  /** The paths a file may have (anchored). */
  pattern: RegExp;
  maxFiles: number;
  maxBytes: number;
}

/** The manifest's JSON, parsed; not JSON is ECORRUPT with `invalid` as the message prefix. */
export function parseJson(data: Buffer, invalid: string): unknown {
  try {
    return JSON.parse(data.toString('utf8')) as unknown;
  } catch {
    throw new CorruptDataError(`${invalid}: not JSON`);
  }
}

/**
 * Check a manifest's file list. `invalid` prefixes every message ("archive
 * F has an invalid manifest"); a list over a limit is ELIMIT, any other
 * fault ECORRUPT.
 */
export function parseFileList(value: unknown, rules: FileListRules, invalid: string): ManifestFile[] {
  const bad = (why: string) => new CorruptDataError(`${invalid}: ${why}`);
  if (!Array.isArray(value)) throw bad('no file list');
  if (value.length > rules.maxFiles) throw new LimitError(`${invalid}: more than ${rules.maxFiles} files`);
  const paths = new Set<string>();
  let total = 0;
  for (const f of value as unknown[]) {
    const o = f as Partial<ManifestFile> | null;
    if (typeof o !== 'object' || o === null || typeof o.path !== 'string' || !rules.pattern.test(o.path)) {
      throw bad(`bad file entry ${JSON.stringify(o?.path ?? f)}`);
    }
    if (!Number.isSafeInteger(o.size) || o.size! < 0) throw bad(`bad size for ${o.path}`);
    if (typeof o.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.sha256)) throw bad(`bad sha256 for ${o.path}`);
    if (paths.has(o.path)) throw bad(`${o.path} listed twice`);
    paths.add(o.path);
    total += o.size!;
  }
  if (total > rules.maxBytes) throw new LimitError(`${invalid}: its files hold more than ${rules.maxBytes} bytes`);
  return value as ManifestFile[];
}

/**
 * Entries checked against a manifest as they arrive: each must be listed,
 * a regular file of the listed size, and come once; expect() gives the
 * sha256 its data must hash to (the extractor checks it while writing).
 * Memory is the list itself, already bounded by parseFileList.
 */
export class ManifestCheck {
  private readonly listed = new Map<string, ManifestFile>();
  private readonly seen = new Set<string>();

  constructor(files: readonly ManifestFile[], private readonly voice: Voice) {
    for (const f of files) this.listed.set(f.path, f);
  }

  expect(entry: TarEntry): { sha256: string } {
    const f = this.listed.get(entry.name);
    if (!f || (entry.type !== 'file' && entry.type !== 'contiguous-file')) throw refusalError({ kind: 'unlisted', name: entry.name }, this.voice);
    if (this.seen.has(entry.name)) throw refusalError({ kind: 'duplicate', name: entry.name }, this.voice);
    if (entry.size !== f.size) throw refusalError({ kind: 'size-mismatch', name: entry.name }, this.voice);
    this.seen.add(entry.name);
    return { sha256: f.sha256 };
  }

  /** Refuse the archive if a listed file never came. */
  complete(): void {
    const missing = [...this.listed.keys()].filter((p) => !this.seen.has(p));
    if (missing.length > 0) throw refusalError({ kind: 'missing', names: missing }, this.voice);
  }
}
