import type { StaticMessage } from '../checkpoint/static-message';

/*
 * The daemon's messages (proto/tsvz-v1.proto, proto/grpc-health-v1.proto) as
 * TypeScript sees them after decoding: protobufjs turns snake_case into
 * camelCase, 64-bit integers become Numbers, and a field the sender left
 * unset is absent (`defaults: false`), so every field is optional here and
 * checked by the handler. The encoders are generated at build time
 * (scripts/build, pbjs static-module); test/unit/daemon-proto.test.ts
 * round-trips each type so these views cannot drift from the .proto.
 */

export interface ContainerRef { name?: string }
export type ListRequest = Record<string, never>;
export interface ExitInfoMsg { exitCode?: number; signal?: string; oomKilled?: boolean; finishedAt?: string }
export interface CgroupUsageMsg {
  memoryBytes?: number; memoryLimitBytes?: number; memoryPeakBytes?: number; pids?: number; pidsLimit?: number; oomKills?: number; cpuUsageNs?: number;
}
export interface ContainerInfoMsg {
  name?: string; state?: string; initPid?: number; ip?: string; createdAt?: string; startedAt?: string; pool?: string; template?: string;
  exit?: ExitInfoMsg; checkpoint?: string; cgroup?: CgroupUsageMsg; configJson?: string;
}
export interface ListResponse { containers?: ContainerInfoMsg[] }
export interface StartResponse { initPid?: number }
export interface StopRequest { name?: string; timeoutSeconds?: number }
export type StopResponse = Record<string, never>;
export interface CheckpointRequest { name?: string; id?: string; leaveRunning?: boolean; tcpEstablished?: boolean }
export interface CheckpointResponse { id?: string; createdAt?: string; criuVersion?: string; dumpMs?: number; frozenMs?: number; sizeBytes?: number; leaveRunning?: boolean }
export interface SnapshotRequest { name?: string; snapshot?: string; stateful?: boolean }
export interface SnapshotResponse { name?: string; createdAt?: string; stateful?: boolean }
export interface LogsRequest { name?: string; follow?: boolean; tail?: number }
export interface Chunk { data?: Buffer }
export interface ImportHeader { name?: string; sizeBytes?: number; migration?: string; dataTicket?: string }
export interface ImportMessage { header?: ImportHeader; chunk?: Chunk; part?: 'header' | 'chunk' }
export interface RestoreImportResponse { initPid?: number; sourceContainer?: string; checkpoint?: string }
export interface MigratePrepare { id?: string; name?: string; configJson?: string; tsvzVersion?: string; criuVersion?: string; filesBytes?: number; pool?: string; cpuinfo?: Buffer; checkOnly?: boolean; mode?: string; formats?: string[] }
export interface MigratePrepared { tsvzVersion?: string; criuVersion?: string; format?: string; dataPort?: number }
export interface MigrateReceived { bytes?: number }
export interface MigrateRestored { initPid?: number; restoreMs?: number }
export interface MigrateRef { id?: string; dataTicket?: string; round?: number }
export interface MigratePagesIn { ref?: MigrateRef; chunk?: Chunk; part?: 'ref' | 'chunk' }
export interface MigratePagesOut { chunk?: Chunk; restored?: MigrateRestored; part?: 'chunk' | 'restored' }
export interface MigrateOutcome { phase?: string; name?: string }
export interface MigrateRun { name?: string; to?: string; mode?: string; pool?: string; keepSource?: boolean; checkOnly?: boolean }
export interface MigrateProgress { what?: string; bytes?: number; total?: number; seconds?: number; bytesPerSec?: number; etaSec?: number; done?: boolean }
export interface MigrateEvent { phase?: string; progress?: MigrateProgress; resultJson?: string; migration?: string; part?: 'phase' | 'progress' | 'resultJson' | 'migration' }
export type DescribeRequest = Record<string, never>;
export interface PoolDescription { name?: string; driver?: string; transferFormats?: string[]; incrementalSend?: boolean; error?: string }
export interface HostDescription {
  name?: string; tsvzVersion?: string; criuVersion?: string; kernel?: string; arch?: string;
  criuFeatures?: { lazyPages?: boolean; memDirtyTrack?: boolean }; cpuFlags?: string[]; cgroupMode?: string; pools?: PoolDescription[]; fingerprint?: string;
}
export interface EnrolRequest { tokenSecret?: Buffer; clientName?: string; certificatePem?: string; proof?: Buffer }
export interface EnrolResponse { hostName?: string }
export interface BackupOffer { container?: string }
export interface BackupOfferResponse { formats?: string[]; snapshots?: string[] }
export interface BackupHeader {
  container?: string; snapshot?: string; createdAt?: string; format?: string; parent?: string; configJson?: string; schedule?: string; keep?: string; timeZone?: string; stateful?: boolean;
}
export interface BackupTrailer { sha256?: Buffer; bytes?: number }
export interface BackupMessage { header?: BackupHeader; chunk?: Chunk; trailer?: BackupTrailer; part?: 'header' | 'chunk' | 'trailer' }
export interface BackupReceived { bytes?: number; pruned?: string[] }
export interface BackupListRequest { container?: string }
export interface BackupEntryMsg {
  container?: string; snapshot?: string; createdAt?: string; format?: string; parent?: string; bytes?: number; sha256?: string; schedule?: string; receivedAt?: string; stateful?: boolean;
}
export interface BackupListResponse { backups?: BackupEntryMsg[] }
export interface BackupFetchRequest { container?: string; snapshot?: string }
export interface HealthCheckRequest { service?: string }
export interface HealthCheckResponse { status?: 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN' }

/** What a peer sent that is not a message of the expected type: handlers refuse it with EINVAL. */
export class BadMessage {
  constructor(readonly reason: string) {}
}

export interface Codec<T> {
  encode(value: T): Buffer;
  /** Never throws: bytes that do not decode give a BadMessage. */
  decode(data: Buffer): T | BadMessage;
}

/**
 * `chunkField`: the number of the message's `Chunk chunk` field. A message
 * holding only a chunk (the bulk of every upload) is then encoded directly,
 * with one copy of its data, instead of through protobufjs's writer (three
 * copies and the garbage they leave, which cost the source of a migration
 * more CPU than TLS does).
 */
function codec<T>(type: () => StaticMessage, opts: { chunkField?: number } = {}): Codec<T> {
  const { chunkField } = opts;
  return {
    encode: (value) => {
      if (chunkField !== undefined) {
        const data = onlyChunk(value);
        if (data) return encodeChunkMessage(chunkField, data);
      }
      const bytes = type().encode(type().fromObject(value as object)).finish();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    decode: (data) => {
      try {
        return type().toObject(type().decode(data), { longs: Number, enums: String, oneofs: true } as never) as T;
      } catch (err) {
        return new BadMessage((err as Error).message);
      }
    },
  };
}

/** The data of a message whose one field is a non-empty `chunk: { data }`, else undefined. */
function onlyChunk(value: unknown): Uint8Array | undefined {
  const v = value as { chunk?: { data?: unknown } };
  if (typeof v !== 'object' || v === null || Object.keys(v).length !== 1 || typeof v.chunk !== 'object' || v.chunk === null) return undefined;
  const data = v.chunk.data;
  return data instanceof Uint8Array && data.length > 0 && Object.keys(v.chunk).length === 1 ? data : undefined;
}

/** The wire form of `{ chunk: { data } }` (field `field`, length-delimited; Chunk.data is field 1): what protobufjs writes. */
export function encodeChunkMessage(field: number, data: Uint8Array): Buffer {
  const inner = 1 + varintLength(data.length) + data.length;
  const out = Buffer.allocUnsafe(varintLength((field << 3) | 2) + varintLength(inner) + inner);
  let at = writeVarint(out, 0, (field << 3) | 2);
  at = writeVarint(out, at, inner);
  out[at++] = 0x0a;
  at = writeVarint(out, at, data.length);
  out.set(data, at);
  return out;
}

function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) { n >>>= 7; length++; }
  return length;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) { buf[at++] = (n & 0x7f) | 0x80; n >>>= 7; }
  buf[at++] = n;
  return at;
}

/** One RPC: its path and how its messages are coded. */
export interface Method<Req, Res> {
  service: string;
  name: string;
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  request: Codec<Req>;
  response: Codec<Res>;
}

function method<Req, Res>(service: string, name: string, request: Codec<Req>, response: Codec<Res>, streams: { request?: boolean; response?: boolean } = {}): Method<Req, Res> {
  return { service, name, path: `/${service}/${name}`, requestStream: streams.request === true, responseStream: streams.response === true, request, response };
}

let v1: Record<string, StaticMessage> | undefined;
let health: Record<string, StaticMessage> | undefined;
const tsvz = (name: string) => () => (v1 ??= (require('../proto/tsvz-v1') as { tsvz: { v1: Record<string, StaticMessage> } }).tsvz.v1)[name];
const grpcHealth = (name: string) => () => (health ??= (require('../proto/grpc-health-v1') as { grpc: { health: { v1: Record<string, StaticMessage> } } }).grpc.health.v1)[name];

const C = 'tsvz.v1.Containers';
export const Containers = {
  List: method<ListRequest, ListResponse>(C, 'List', codec(tsvz('ListRequest')), codec(tsvz('ListResponse'))),
  Info: method<ContainerRef, ContainerInfoMsg>(C, 'Info', codec(tsvz('ContainerRef')), codec(tsvz('ContainerInfo'))),
  Start: method<ContainerRef, StartResponse>(C, 'Start', codec(tsvz('ContainerRef')), codec(tsvz('StartResponse'))),
  Stop: method<StopRequest, StopResponse>(C, 'Stop', codec(tsvz('StopRequest')), codec(tsvz('StopResponse'))),
  Checkpoint: method<CheckpointRequest, CheckpointResponse>(C, 'Checkpoint', codec(tsvz('CheckpointRequest')), codec(tsvz('CheckpointResponse'))),
  Snapshot: method<SnapshotRequest, SnapshotResponse>(C, 'Snapshot', codec(tsvz('SnapshotRequest')), codec(tsvz('SnapshotResponse'))),
  Logs: method<LogsRequest, Chunk>(C, 'Logs', codec(tsvz('LogsRequest')), codec(tsvz('Chunk')), { response: true }),
  RestoreImport: method<ImportMessage, RestoreImportResponse>(C, 'RestoreImport', codec(tsvz('ImportMessage'), { chunkField: 2 }), codec(tsvz('RestoreImportResponse')), { request: true }),
};

export const Host = {
  Describe: method<DescribeRequest, HostDescription>('tsvz.v1.Host', 'Describe', codec(tsvz('DescribeRequest')), codec(tsvz('HostDescription'))),
};

const M = 'tsvz.v1.Migration';
export const Migration = {
  Prepare: method<MigratePrepare, MigratePrepared>(M, 'Prepare', codec(tsvz('MigratePrepare')), codec(tsvz('MigratePrepared'))),
  ReceiveFiles: method<ImportMessage, MigrateReceived>(M, 'ReceiveFiles', codec(tsvz('ImportMessage'), { chunkField: 2 }), codec(tsvz('MigrateReceived')), { request: true }),
  ReceiveFileChanges: method<ImportMessage, MigrateReceived>(M, 'ReceiveFileChanges', codec(tsvz('ImportMessage'), { chunkField: 2 }), codec(tsvz('MigrateReceived')), { request: true }),
  ReceiveCheckpoint: method<ImportMessage, MigrateRestored>(M, 'ReceiveCheckpoint', codec(tsvz('ImportMessage'), { chunkField: 2 }), codec(tsvz('MigrateRestored')), { request: true }),
  Commit: method<MigrateRef, MigrateOutcome>(M, 'Commit', codec(tsvz('MigrateRef')), codec(tsvz('MigrateOutcome'))),
  Abort: method<MigrateRef, MigrateOutcome>(M, 'Abort', codec(tsvz('MigrateRef')), codec(tsvz('MigrateOutcome'))),
  Status: method<MigrateRef, MigrateOutcome>(M, 'Status', codec(tsvz('MigrateRef')), codec(tsvz('MigrateOutcome'))),
  Pages: method<MigratePagesIn, MigratePagesOut>(M, 'Pages', codec(tsvz('MigratePagesIn'), { chunkField: 2 }), codec(tsvz('MigratePagesOut'), { chunkField: 1 }), { request: true, response: true }),
  Run: method<MigrateRun, MigrateEvent>(M, 'Run', codec(tsvz('MigrateRun')), codec(tsvz('MigrateEvent')), { response: true }),
};

const B = 'tsvz.v1.Backups';
export const Backups = {
  Offer: method<BackupOffer, BackupOfferResponse>(B, 'Offer', codec(tsvz('BackupOffer')), codec(tsvz('BackupOfferResponse'))),
  Receive: method<BackupMessage, BackupReceived>(B, 'Receive', codec(tsvz('BackupMessage'), { chunkField: 2 }), codec(tsvz('BackupReceived')), { request: true }),
  List: method<BackupListRequest, BackupListResponse>(B, 'List', codec(tsvz('BackupListRequest')), codec(tsvz('BackupListResponse'))),
  Fetch: method<BackupFetchRequest, BackupMessage>(B, 'Fetch', codec(tsvz('BackupFetchRequest')), codec(tsvz('BackupMessage'), { chunkField: 2 }), { response: true }),
  ReceiveState: method<BackupMessage, BackupReceived>(B, 'ReceiveState', codec(tsvz('BackupMessage'), { chunkField: 2 }), codec(tsvz('BackupReceived')), { request: true }),
  FetchState: method<BackupFetchRequest, BackupMessage>(B, 'FetchState', codec(tsvz('BackupFetchRequest')), codec(tsvz('BackupMessage'), { chunkField: 2 }), { response: true }),
};

export const Trust = {
  Enrol: method<EnrolRequest, EnrolResponse>('tsvz.v1.Trust', 'Enrol', codec(tsvz('EnrolRequest')), codec(tsvz('EnrolResponse'))),
};

const H = 'grpc.health.v1.Health';
export const Health = {
  Check: method<HealthCheckRequest, HealthCheckResponse>(H, 'Check', codec(grpcHealth('HealthCheckRequest')), codec(grpcHealth('HealthCheckResponse'))),
  Watch: method<HealthCheckRequest, HealthCheckResponse>(H, 'Watch', codec(grpcHealth('HealthCheckRequest')), codec(grpcHealth('HealthCheckResponse')), { response: true }),
};
