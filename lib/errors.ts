/**
 * Typed errors with a closed set of codes. Every failure a user can cause or
 * meet carries one `code` from ERROR_CODES, an optional `hint` (what to do
 * about it), its `cause` chain, and the cleanups that failed while undoing
 * it. The CLI prints `tsvz: <message> (<hint>)` and exits with the code's
 * exit status; the daemon maps the code to a gRPC status. Tests assert codes;
 * message text is for people.
 */

/** gRPC status names (the ones tsvz answers with). */
export type GrpcStatusName =
  | 'CANCELLED' | 'INVALID_ARGUMENT' | 'DEADLINE_EXCEEDED' | 'NOT_FOUND' | 'ALREADY_EXISTS' | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED' | 'FAILED_PRECONDITION' | 'ABORTED' | 'UNIMPLEMENTED' | 'INTERNAL' | 'UNAVAILABLE'
  | 'DATA_LOSS' | 'UNAUTHENTICATED';

/** The numbers of those statuses (grpc's status.proto). */
export const GRPC_STATUS: Record<GrpcStatusName, number> = {
  CANCELLED: 1, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

/** Exit status for "busy, try again" (sysexits' EX_TEMPFAIL): scripts can retry on it. */
export const EXIT_TEMPFAIL = 75;

/** Every error code, with its CLI exit status and its gRPC status: the one table. */
export const ERROR_CODES = {
  /** Malformed input: a bad name, size, option, config field. */
  EINVAL: { exit: 1, grpc: 'INVALID_ARGUMENT' },
  ENOENT: { exit: 1, grpc: 'NOT_FOUND' },
  EEXIST: { exit: 1, grpc: 'ALREADY_EXISTS' },
  /** The object is in the wrong state for the operation (start while running). */
  ESTATE: { exit: 1, grpc: 'FAILED_PRECONDITION' },
  /** Something still depends on what was to be changed (a clone on a snapshot, newer snapshots). */
  EDEPENDENT: { exit: 1, grpc: 'FAILED_PRECONDITION' },
  /** A pool still holds volumes. */
  ENOTEMPTY: { exit: 1, grpc: 'FAILED_PRECONDITION' },
  /** Another operation holds the lock. */
  EBUSY: { exit: EXIT_TEMPFAIL, grpc: 'ABORTED' },
  /** This host lacks a kernel feature or tool the operation needs. */
  ENOTSUP: { exit: 1, grpc: 'UNIMPLEMENTED' },
  /** A pool or filesystem is full. */
  ENOSPC: { exit: 1, grpc: 'RESOURCE_EXHAUSTED' },
  /** Input over a size or count limit (an archive, a message, a stream). */
  ELIMIT: { exit: 1, grpc: 'RESOURCE_EXHAUSTED' },
  /** Data that fails its checks: truncated, tampered, not what it claims to be. */
  ECORRUPT: { exit: 1, grpc: 'DATA_LOSS' },
  /** Signed by nobody this host trusts, or not signed. */
  EUNTRUSTED: { exit: 1, grpc: 'PERMISSION_DENIED' },
  /** The caller is not known (no or unknown certificate, bad token). */
  EUNAUTHENTICATED: { exit: 1, grpc: 'UNAUTHENTICATED' },
  /** The caller is known but may not do this (revoked, token for another host). */
  EPERM: { exit: 1, grpc: 'PERMISSION_DENIED' },
  /** A peer (another host's daemon) cannot be reached. */
  EUNAVAILABLE: { exit: 1, grpc: 'UNAVAILABLE' },
  ETIMEDOUT: { exit: 1, grpc: 'DEADLINE_EXCEEDED' },
  ECANCELLED: { exit: 130, grpc: 'CANCELLED' },
  /** CRIU failed; the message quotes its log. */
  ECRIU: { exit: 1, grpc: 'INTERNAL' },
  /** A host tool (ip, btrfs, zfs, ...) failed. */
  ECOMMAND: { exit: 1, grpc: 'INTERNAL' },
  /** A system call or file operation failed. */
  ESYSTEM: { exit: 1, grpc: 'INTERNAL' },
  /** Launching or supervising the container's init failed. */
  ELAUNCH: { exit: 1, grpc: 'INTERNAL' },
  /** A storage operation failed for another reason. */
  ESTORAGE: { exit: 1, grpc: 'INTERNAL' },
  /** A bug: something that should not happen. */
  EINTERNAL: { exit: 1, grpc: 'INTERNAL' },
} as const satisfies Record<string, { exit: number; grpc: GrpcStatusName }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

export interface ErrorOptions {
  hint?: string;
  cause?: unknown;
  errno?: number;
}

export class TsvzError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly errno?: number;
  /** Undo steps that failed while this error unwound an operation ("label: reason"). */
  cleanupFailures: string[] = [];

  constructor(code: ErrorCode, message: string, opts: ErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = opts.hint;
    this.errno = opts.errno;
  }

  /** Process exit status the CLI uses for this error. */
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get grpcStatus(): GrpcStatusName {
    return ERROR_CODES[this.code].grpc;
  }
}

/** The user asked for something malformed: a bad name, size, option. */
export class InvalidArgumentError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('EINVAL', message, { hint });
  }
}

export class NotFoundError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ENOENT', message, { hint });
  }
}

export class AlreadyExistsError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('EEXIST', message, { hint });
  }
}

/** The container is in the wrong state for the operation (e.g. start while running). */
export class InvalidStateError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ESTATE', message, { hint });
  }
}

/** Another operation holds the container's lock. */
export class BusyError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('EBUSY', message, { hint });
  }
}

/** This host lacks a kernel feature or tool the operation needs. */
export class NotSupportedError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ENOTSUP', message, { hint });
  }
}

/** Input over a limit (size, count) that tsvz sets to bound what a stranger can make it do. */
export class LimitError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ELIMIT', message, { hint });
  }
}

/** Data that fails its own checks (checksums, sizes, structure): truncated or tampered. */
export class CorruptDataError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ECORRUPT', message, { hint });
  }
}

/** A wait that ran out. */
export class TimeoutError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ETIMEDOUT', message, { hint });
  }
}

/** A host command we run (ip, btrfs, zfs, ...) failed. */
export class CommandError extends TsvzError {
  readonly command: string;
  readonly stderr: string;
  constructor(command: string, status: number | null, stderr: string) {
    const lastLine = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
    super('ECOMMAND', `${command} failed (exit ${status ?? 'signal'})${lastLine ? `: ${lastLine}` : ''}`);
    this.command = command;
    this.stderr = stderr;
  }
}

/** A system call or file operation failed. */
export class SystemError extends TsvzError {
  constructor(message: string, cause?: unknown) {
    const errno = (cause as NodeJS.ErrnoException | undefined)?.errno;
    super('ESYSTEM', message, { cause, errno: typeof errno === 'number' ? errno : undefined });
  }
}

/** Launching or supervising the container's init failed. */
export class LaunchError extends TsvzError {
  constructor(message: string, hint?: string) {
    super('ELAUNCH', message, { hint });
  }
}

/** The errno name ("EBUSY") of a Node error, or of the one a SystemError wraps. */
export function errnoCode(err: unknown): string | undefined {
  const errno = (err instanceof SystemError ? err.cause : err) as NodeJS.ErrnoException | undefined;
  return typeof errno?.code === 'string' ? errno.code : undefined;
}

/** Record undo steps that failed on `err` (a plain Error gets the field too). */
export function addCleanupFailures(err: unknown, failures: string[]): void {
  if (failures.length === 0 || !(err instanceof Error)) return;
  const e = err as Error & { cleanupFailures?: string[] };
  e.cleanupFailures = [...(e.cleanupFailures ?? []), ...failures];
}

/** The cleanups that failed while `err` unwound an operation. */
export function cleanupFailuresOf(err: unknown): string[] {
  const f = (err as { cleanupFailures?: unknown } | undefined)?.cleanupFailures;
  return Array.isArray(f) ? f.filter((x): x is string => typeof x === 'string') : [];
}

/** The code of anything thrown: its own, or EINTERNAL for what tsvz did not type. */
export function codeOf(err: unknown): ErrorCode {
  return err instanceof TsvzError ? err.code : 'EINTERNAL';
}

/** Turn anything thrown into a one-line message for the user. */
export function describeError(err: unknown): string {
  let text = err instanceof Error ? err.message : String(err);
  if (err instanceof TsvzError && err.hint) text += ` (${err.hint})`;
  const failed = cleanupFailuresOf(err);
  if (failed.length > 0) text += ` (cleanup also failed: ${failed.join('; ')})`;
  return text;
}
