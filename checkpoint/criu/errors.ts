import fs = require('node:fs');
import { TsvzError } from '../../lib/errors';

/*
 * Logged on every run on hosts without CAP_SYS_RESOURCE in the bounding set,
 * whatever happens next: never the cause of a failure.
 */
const NOISE = [/Can't setup RLIMIT_NOFILE/];

/**
 * The `Error (file:line): message` lines of a CRIU log, without timestamps,
 * in log order (the first is usually the cause, the last "Dumping FAILED.").
 * Empty when the log is missing or unreadable.
 */
export function criuLogErrors(logPath: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(logPath, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => /\bError \(.*$/.exec(line)?.[0])
    .filter((line): line is string => line !== undefined && !NOISE.some((re) => re.test(line)));
}

export interface CriuFailure {
  /** What CRIU answered in criu_resp (cr_errmsg is CRIU's first logged error, often NOISE). */
  crErrno?: number;
  crErrmsg?: string;
  /** Full path of the operation's log, when there is one. */
  logPath?: string;
  /** Overrides the log as the explanation, e.g. the notify hook that failed. */
  detail?: string;
  /** What the user can do about it. */
  hint?: string;
  cause?: unknown;
}

/** A CRIU operation failed; the message carries CRIU's reason from its log. */
export class CriuError extends TsvzError {
  readonly operation: string;
  readonly crErrno?: number;
  readonly crErrmsg?: string;
  readonly logPath?: string;
  readonly errorLines: string[];

  constructor(operation: string, failure: CriuFailure) {
    const errorLines = failure.logPath ? criuLogErrors(failure.logPath) : [];
    const crErrmsg = failure.crErrmsg?.trim();
    const reason = failure.detail ?? errorLines[0] ?? crErrmsg ?? (failure.crErrno ? `errno ${failure.crErrno}` : 'no reason given');
    super('ECRIU', `criu ${operation} failed: ${reason}${failure.logPath ? ` (log: ${failure.logPath})` : ''}`, {
      hint: failure.hint,
      cause: failure.cause,
      errno: failure.crErrno,
    });
    this.operation = operation;
    this.crErrno = failure.crErrno;
    this.crErrmsg = crErrmsg;
    this.logPath = failure.logPath;
    this.errorLines = errorLines;
  }
}
