import { CorruptDataError, InvalidArgumentError, LimitError, TsvzError } from '../lib/errors';
import { formatBytes } from '../lib/units';

/**
 * Why an archive is refused, as data. The reader and the extractor raise
 * these; each caller words them for its own users (a rootfs tarball, a
 * volume stream, a checkpoint archive) through a Voice. The error class
 * follows from the kind: damaged data is ECORRUPT, anything over a limit
 * ELIMIT, and an entry the policy forbids EINVAL when the archive is the
 * user's own input, ECORRUPT when a peer sent it.
 */
export type Refusal =
  // The stream as a whole.
  | { kind: 'truncated'; detail: string }
  | { kind: 'corrupt'; format: 'tar' | 'gzip' | 'zstd'; detail: string }
  | { kind: 'empty' }
  | { kind: 'too-many-entries'; max: number }
  | { kind: 'too-much-data'; max: number }
  // One entry.
  | { kind: 'unsafe-path'; name: string }
  | { kind: 'nul-in-name'; name: string }
  | { kind: 'unsafe-type'; name: string; type: string }
  | { kind: 'through-symlink'; name: string; dir: string }
  | { kind: 'parent-not-dir'; name: string; dir: string }
  | { kind: 'parent-missing'; name: string; dir: string }
  | { kind: 'replaces-dir'; name: string; path: string }
  | { kind: 'replaces-root'; name: string }
  | { kind: 'duplicate'; name: string }
  | { kind: 'link-escapes'; name: string; target: string }
  | { kind: 'link-target'; name: string; target: string }
  | { kind: 'link-self'; name: string }
  | { kind: 'bad-symlink'; name: string }
  | { kind: 'bad-owner'; name: string; uid: unknown; gid: unknown }
  | { kind: 'bad-header'; name: string; detail: string }
  | { kind: 'entry-too-big'; name: string; max: number }
  // An entry checked against a manifest.
  | { kind: 'unlisted'; name: string }
  | { kind: 'size-mismatch'; name: string }
  | { kind: 'checksum-mismatch'; name: string }
  | { kind: 'missing'; names: string[] };

export type RefusalKind = Refusal['kind'];

/** How one caller speaks of its archive. */
export interface Voice {
  /** The archive as the subject of a sentence: "tarball /x.tar", "tar stream". */
  subject: string;
  /** What its entries are called: "tarball" gives `tarball entry "x" escapes the root`. */
  entries: string;
  /** Who made the archive: the user (a file they named) or a peer (a stream from another host or pool). */
  origin: 'user' | 'peer';
  /** The caller's own wording for some refusals; undefined keeps the default. */
  say?(r: Refusal): string | undefined;
}

/** Damage whoever made the archive: an entry twice can only come from an edited or broken writer. */
const CORRUPT: ReadonlySet<RefusalKind> = new Set(['truncated', 'corrupt', 'empty', 'duplicate', 'unlisted', 'size-mismatch', 'checksum-mismatch', 'missing']);
const LIMIT: ReadonlySet<RefusalKind> = new Set(['too-many-entries', 'too-much-data', 'entry-too-big']);

/** The typed error for a refusal, worded by `voice`. */
export function refusalError(r: Refusal, voice: Voice): TsvzError {
  const message = voice.say?.(r) ?? defaultMessage(r, voice);
  if (LIMIT.has(r.kind)) return new LimitError(message, limitHint(r));
  if (CORRUPT.has(r.kind) || voice.origin === 'peer') return new CorruptDataError(message);
  return new InvalidArgumentError(message);
}

function limitHint(r: Refusal): string | undefined {
  // The limits guard against hostile archives; where a caller offers a way to raise one, it says so.
  if (r.kind === 'too-many-entries' || r.kind === 'too-much-data') return 'the limit bounds what an archive from anyone may make this host do';
  return undefined;
}

export function defaultMessage(r: Refusal, voice: Voice): string {
  const s = voice.subject;
  const e = voice.entries;
  switch (r.kind) {
    case 'truncated': return `${s} is truncated`;
    case 'corrupt': return `${s} is not a valid ${r.format} archive: ${r.detail}`;
    case 'empty': return `${s} has no entries`;
    case 'too-many-entries': return `${s} has more than ${r.max} entries`;
    case 'too-much-data': return `${s} holds more than ${formatBytes(r.max)} of data`;
    case 'unsafe-path': return `${e} entry "${r.name}" escapes the root`;
    case 'nul-in-name': return `${e} entry "${r.name}" has a NUL byte in its name`;
    case 'unsafe-type': return `${e} entry "${r.name}" has an unsupported type (${r.type})`;
    case 'through-symlink': return `${e} entry "${r.name}" would write through symlink "${r.dir}"`;
    case 'parent-not-dir': return `${e} entry "${r.name}" has a parent "${r.dir}" that is not a directory`;
    case 'parent-missing': return `${e} entry "${r.name}" comes before its parent directory "${r.dir}"`;
    case 'replaces-dir': return `${e} entry "${r.name}" would replace directory "${r.path}"`;
    case 'replaces-root': return `${e} entry "${r.name}" would replace the root directory`;
    case 'duplicate': return `${e} entry "${r.name}" appears twice`;
    case 'link-escapes': return `${e} hard link "${r.name}" -> "${r.target}" escapes the root`;
    case 'link-target': return `${e} hard link "${r.name}" -> "${r.target}" does not name a file extracted before it`;
    case 'link-self': return `${e} hard link "${r.name}" links to itself`;
    case 'bad-symlink': return `${e} symlink "${r.name}" has an invalid target`;
    case 'bad-owner': return `${e} entry "${r.name}" has an invalid owner ${String(r.uid)}:${String(r.gid)}`;
    case 'bad-header': return `${e} entry "${r.name}" has a bad header: ${r.detail}`;
    case 'entry-too-big': return `${e} entry "${r.name}" is larger than ${formatBytes(r.max)}`;
    case 'unlisted': return `${s} has an entry its manifest does not list: ${r.name}`;
    case 'size-mismatch': return `${s} has an entry of another size than its manifest lists: ${r.name}`;
    case 'checksum-mismatch': return `${s} has an entry whose checksum differs from its manifest's: ${r.name}`;
    case 'missing': return `${s} is truncated: ${missingText(r.names)}`;
  }
}

/** "a is missing", "a and 2 more files are missing". */
export function missingText(names: string[]): string {
  return `${names[0]}${names.length > 1 ? ` and ${names.length - 1} more files are` : ' is'} missing`;
}
