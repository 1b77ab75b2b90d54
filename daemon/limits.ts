/**
 * What one peer can make this daemon hold. Every message is bounded by
 * grpc-js's receive limit on both sides; byte streams travel in chunks of at
 * most MAX_CHUNK (a large message costs several copies in grpc-js); an
 * upload is bounded in total bytes, in idle time, and by a disk quota shared
 * by every upload in progress.
 */
export const MAX_CHUNK = 1024 * 1024;
/** A chunk plus its envelope fits with room to spare; nothing else comes near. */
export const MAX_MESSAGE = 4 * 1024 * 1024;

export interface DaemonLimits {
  /** Bytes one upload may carry. */
  maxUploadBytes: number;
  /** Bytes all uploads in progress may hold on disk together. */
  uploadQuotaBytes: number;
  /** Free space the filesystem of the root keeps: an upload that would go below it stops. */
  reserveBytes: number;
  /** An upload that sends nothing this long ends. */
  idleMs: number;
  /** Calls one connection may have open at once (HTTP/2 streams). */
  maxStreamsPerConnection: number;
  /** Connections at once. */
  maxConnections: number;
  /** SIGTERM: how long calls in flight may take to finish before the daemon exits anyway. */
  drainMs: number;
  /** A TLS handshake that takes longer is dropped. */
  handshakeMs: number;
}

export const DEFAULT_LIMITS: DaemonLimits = {
  maxUploadBytes: 64 * 1024 ** 3,
  uploadQuotaBytes: 128 * 1024 ** 3,
  reserveBytes: 1024 ** 3,
  idleMs: 60_000,
  maxStreamsPerConnection: 100,
  maxConnections: 1024,
  drainMs: 30_000,
  handshakeMs: 10_000,
};

/** Keepalive on both sides: a peer that vanished (host down, cable out) is noticed. */
export const KEEPALIVE_MS = 30_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;
