import { CommandError, ErrorCode, TsvzError } from '../lib/errors';

/**
 * A storage operation failed: the pool is full, a snapshot is still needed
 * by a clone, a send stream broke. `code` is ENOSPC when the pool filled up,
 * EDEPENDENT when something still depends on what was to be removed, and
 * ESTORAGE otherwise.
 */
export class StorageError extends TsvzError {
  constructor(message: string, opts: { code?: Extract<ErrorCode, 'ENOSPC' | 'EDEPENDENT' | 'ENOTEMPTY' | 'ESTORAGE' | 'ETIMEDOUT' | 'EBUSY'>; hint?: string; cause?: unknown } = {}) {
    super(opts.code ?? 'ESTORAGE', message, { hint: opts.hint, cause: opts.cause });
  }
}

// Words of cp/btrfs/mkfs ("No space left"), zfs ("out of space") and lvcreate (thin pool full).
const NO_SPACE = /no space left|out of space|ENOSPC|quota exceeded|EDQUOT|thin pool.*(full|threshold|out of data space)|insufficient free (space|extents)/i;

/** Did this failure happen because the pool (or the filesystem under it) is full? */
export function isNoSpace(err: unknown): boolean {
  if (err instanceof StorageError) return err.code === 'ENOSPC';
  if (err instanceof CommandError) return NO_SPACE.test(err.stderr) || NO_SPACE.test(err.message);
  const e = err as NodeJS.ErrnoException | undefined;
  return e?.code === 'ENOSPC' || e?.code === 'EDQUOT';
}

/**
 * Describe a failed step as "cannot <what> in pool <pool>: <reason>", turning
 * "no space" into a StorageError the user can act on. Typed tsvz errors other
 * than command failures (bad names, missing snapshots) pass through unchanged.
 */
export function storageFailure(what: string, pool: string, err: unknown): TsvzError {
  if (err instanceof StorageError) return err;
  if (isNoSpace(err)) {
    return new StorageError(`cannot ${what}: pool ${pool} is full`, {
      code: 'ENOSPC',
      hint: 'free space in the pool (delete snapshots or volumes) or grow it',
      cause: err,
    });
  }
  if (err instanceof TsvzError && !(err instanceof CommandError)) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new StorageError(`cannot ${what} in pool ${pool}: ${reason}`, { cause: err });
}

/** The error for removing a snapshot that clones were made from. */
export function dependentClones(vol: string, snap: string, clones: string[]): StorageError {
  return new StorageError(`snapshot ${vol}@${snap} is the origin of ${clones.length === 1 ? 'clone' : 'clones'} ${clones.join(', ')}`, {
    code: 'EDEPENDENT',
    hint: `delete ${clones.length === 1 ? 'that clone' : 'those clones'} first`,
  });
}
