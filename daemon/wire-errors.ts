import type * as grpc from '@grpc/grpc-js';
import { codeOf, ERROR_CODES, ErrorCode, GRPC_STATUS, GrpcStatusName, isErrorCode, TsvzError } from '../lib/errors';

/**
 * Errors across the wire, through the one table in lib/errors.ts. The server
 * answers with the code's gRPC status, the message as its details, and the
 * code and hint in trailing metadata; the client turns that back into a
 * TsvzError with the same code, so the CLI prints a remote error exactly as
 * a local one (prefixed with the host's name). A status without tsvz's
 * metadata (grpc-js's own: a message over the limit, a connection that
 * failed) is mapped back by its status.
 */
const CODE_KEY = 'tsvz-error-code';
const HINT_KEY = 'tsvz-error-hint-bin';

export interface WireError {
  code: number;
  details: string;
  metadata: grpc.Metadata;
}

/** The gRPC status number of anything thrown. */
export function grpcCodeOf(err: unknown): number {
  return GRPC_STATUS[ERROR_CODES[codeOf(err)].grpc];
}

export function toWireError(err: unknown, Metadata: typeof grpc.Metadata): WireError {
  const code = codeOf(err);
  const metadata = new Metadata();
  metadata.set(CODE_KEY, code);
  if (err instanceof TsvzError && err.hint) metadata.set(HINT_KEY, Buffer.from(err.hint));
  let details = err instanceof Error ? err.message : String(err);
  const cleanup = (err as { cleanupFailures?: string[] } | undefined)?.cleanupFailures;
  if (Array.isArray(cleanup) && cleanup.length > 0) details += ` (cleanup also failed: ${cleanup.join('; ')})`;
  return { code: grpcCodeOf(err), details, metadata };
}

/** The tsvz code a status without tsvz metadata stands for. */
const FROM_STATUS: Record<number, ErrorCode> = {
  [GRPC_STATUS.CANCELLED]: 'ECANCELLED',
  [GRPC_STATUS.INVALID_ARGUMENT]: 'EINVAL',
  [GRPC_STATUS.DEADLINE_EXCEEDED]: 'ETIMEDOUT',
  [GRPC_STATUS.NOT_FOUND]: 'ENOENT',
  [GRPC_STATUS.ALREADY_EXISTS]: 'EEXIST',
  [GRPC_STATUS.PERMISSION_DENIED]: 'EPERM',
  [GRPC_STATUS.RESOURCE_EXHAUSTED]: 'ELIMIT',
  [GRPC_STATUS.FAILED_PRECONDITION]: 'ESTATE',
  [GRPC_STATUS.ABORTED]: 'EBUSY',
  [GRPC_STATUS.UNIMPLEMENTED]: 'ENOTSUP',
  [GRPC_STATUS.UNAVAILABLE]: 'EUNAVAILABLE',
  [GRPC_STATUS.DATA_LOSS]: 'ECORRUPT',
  [GRPC_STATUS.UNAUTHENTICATED]: 'EUNAUTHENTICATED',
};

export function statusName(code: number): GrpcStatusName | 'OK' | 'UNKNOWN' {
  if (code === 0) return 'OK';
  return (Object.keys(GRPC_STATUS) as GrpcStatusName[]).find((k) => GRPC_STATUS[k] === code) ?? 'UNKNOWN';
}

/** A status from host `host` as the TsvzError the CLI prints: "<host>: <message> (<hint>)". */
export function fromWireError(host: string, err: { code?: number; details?: string; metadata?: grpc.Metadata }): TsvzError {
  const sent = err.metadata?.get(CODE_KEY)[0];
  const code: ErrorCode = isErrorCode(sent) ? sent : FROM_STATUS[err.code ?? -1] ?? 'EINTERNAL';
  const hint = err.metadata?.get(HINT_KEY)[0];
  let details = err.details || statusName(err.code ?? 2);
  if (!isErrorCode(sent) && err.code === GRPC_STATUS.UNAVAILABLE) details = `cannot reach the daemon: ${details}`;
  return new TsvzError(code, `${host}: ${details}`, { hint: Buffer.isBuffer(hint) ? hint.toString() : undefined });
}
