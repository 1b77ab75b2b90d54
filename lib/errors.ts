/**
 * Typed errors. Every failure the user can cause or meet carries a stable
 * `code`, an optional `hint` (what to do about it) and the `cause` chain.
 * The CLI prints `tsvz: <message> (<hint>)` and exits non-zero; only the
 * migrate/ boundary maps these to gRPC status codes.
 */
export class TsvzError extends Error {
  readonly code: string;
  readonly hint?: string;
  readonly errno?: number;
  /** Process exit status the CLI uses for this error. */
  readonly exitCode: number = 1;

  constructor(code: string, message: string, opts: { hint?: string; cause?: unknown; errno?: number } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = opts.hint;
    this.errno = opts.errno;
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

/** A host command we run (ip, btrfs, zfs, ...) failed. */
export class CommandError extends TsvzError {
  readonly command: string;
  readonly stderr: string;
  constructor(command: string, status: number | null, stderr: string) {
    const firstLine = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
    super('ECOMMAND', `${command} failed (exit ${status ?? 'signal'})${firstLine ? `: ${firstLine}` : ''}`);
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

/** Turn anything thrown into a one-line message for the user. */
export function describeError(err: unknown): string {
  if (err instanceof TsvzError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
