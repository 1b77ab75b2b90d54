import type { Refusal } from './refusal';

/**
 * What an archive may do to the directory it is extracted into. One
 * extractor serves every caller; the differences between a hostile rootfs
 * tarball, a volume tree sent by another pool and a checkpoint's image
 * files are these fields, not separate code.
 */

/** What to do with an entry of some type: make it, leave it out with a note, or refuse the archive. */
export type EntryAction = 'create' | 'skip' | 'refuse';

export interface ExtractPolicy {
  /** A leading "/": stripped (noted once, as tar does) or the archive refused. */
  absoluteNames: 'strip' | 'refuse';
  /** An entry whose path exists already: it replaces a non-directory (tar's way), or the archive is refused. */
  existing: 'replace' | 'refuse';
  /** Parents with no entry of their own: created (0755), or the archive refused. */
  implicitParents: boolean;
  /** 'all' keeps setuid/setgid (a volume is a rootfs we made); 'no-setuid' drops them; 'private' is 0600/0700 whatever the archive says. */
  modes: 'all' | 'no-setuid' | 'private';
  /** Apply the archive's owners (otherwise the extracting user owns everything). */
  owners: boolean;
  /** Apply the archive's mtimes. */
  times: boolean;
  /** Apply extended attributes carried as TSVZ.xattr pax records (file capabilities and ACLs are xattrs). */
  xattrs: boolean;
  /** Leave holes where whole aligned blocks are zero (the sender's holes were sent as zeros). */
  sparse: boolean;
  symlinks: EntryAction;
  hardlinks: EntryAction;
  /** Character and block devices. */
  devices: EntryAction;
  fifos: EntryAction;
  /** Any other type (sockets, GNU extensions tar-stream does not decode). */
  other: Exclude<EntryAction, 'create'>;
}

/** A rootfs tarball from anywhere: nothing may leave the root, plant a setuid binary or a device node. */
export const ROOTFS_POLICY: Readonly<ExtractPolicy> = {
  absoluteNames: 'strip',
  existing: 'replace',
  implicitParents: true,
  modes: 'no-setuid',
  owners: true,
  times: true,
  xattrs: false,
  sparse: false,
  symlinks: 'create',
  hardlinks: 'create',
  devices: 'skip', // the runtime populates /dev itself
  fifos: 'skip',
  other: 'skip',
};

/** A volume's tree as packTree sends it: everything comes back exactly, and anything unexpected is an error. */
export const TREE_POLICY: Readonly<ExtractPolicy> = {
  absoluteNames: 'refuse',
  existing: 'refuse',
  implicitParents: false,
  modes: 'all',
  owners: true,
  times: true,
  xattrs: true,
  sparse: true,
  symlinks: 'create',
  hardlinks: 'create',
  devices: 'create',
  fifos: 'create',
  other: 'refuse',
};

/** Plain data files (a checkpoint's images): regular files and directories only, private to the extracting user. */
export const FILES_POLICY: Readonly<ExtractPolicy> = {
  absoluteNames: 'refuse',
  existing: 'refuse',
  implicitParents: false,
  modes: 'private',
  owners: false,
  times: false,
  xattrs: false,
  sparse: false,
  symlinks: 'refuse',
  hardlinks: 'refuse',
  devices: 'refuse',
  fifos: 'refuse',
  other: 'refuse',
};

export interface Limits {
  /** Total entry data (declared sizes) the archive may hold. */
  maxBytes: number;
  /** Number of entries the archive may hold. */
  maxEntries: number;
}

export const NO_LIMITS: Readonly<Limits> = { maxBytes: Infinity, maxEntries: Infinity };

/** The entry's action under `policy` (files and directories are always made). */
export function actionFor(policy: ExtractPolicy, type: string | null | undefined): EntryAction {
  switch (type) {
    case 'file':
    case 'contiguous-file':
    case 'directory':
      return 'create';
    case 'symlink':
      return policy.symlinks;
    case 'link':
      return policy.hardlinks;
    case 'character-device':
    case 'block-device':
      return policy.devices;
    case 'fifo':
      return policy.fifos;
    default:
      return policy.other;
  }
}

/**
 * An entry name as a path relative to the root ("" is the root itself), or
 * why it is refused. `..` anywhere is refused outright, never resolved.
 */
export function entryPath(name: string, absoluteNames: ExtractPolicy['absoluteNames']): { path: string; stripped: boolean } | Refusal {
  if (name.includes('\0')) return { kind: 'nul-in-name', name };
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return { kind: 'unsafe-path', name };
  const absolute = name.startsWith('/');
  if (absolute && absoluteNames === 'refuse') return { kind: 'unsafe-path', name };
  return { path: parts.join('/'), stripped: absolute };
}

/** A hard link's target as a root-relative path; absolute targets are refused even where names are stripped. */
export function linkTarget(name: string, linkname: string): { path: string } | Refusal {
  const parts = linkname.split('/').filter((p) => p !== '' && p !== '.');
  if (linkname.startsWith('/') || parts.includes('..') || linkname.includes('\0') || parts.length === 0) {
    return { kind: 'link-escapes', name, target: linkname };
  }
  return { path: parts.join('/') };
}

export function isRefusal(x: object): x is Refusal {
  return 'kind' in x;
}
