import http2 = require('node:http2');

/** What one stream may send before the daemon acknowledges it (HTTP/2's default: 64 KiB). */
export const STREAM_WINDOW = 8 * 1024 * 1024;
/** The same for all streams of one connection together. */
export const CONNECTION_WINDOW = 32 * 1024 * 1024;

/**
 * Run `make` (grpc-js creating its HTTP/2 server) with receive windows wide
 * enough for bulk uploads. Uploads (checkpoint archives, a migration's files
 * and images) arrive on the server's side, so its windows set their rate: at
 * HTTP/2's 64 KiB the sender stops for an acknowledgement every 64 KiB,
 * and both event loops sit idle half the time. grpc-js has no server option
 * for either window; it makes its server with http2.createSecureServer
 * during `make`, so that function is wrapped for that call only: the
 * settings raise each stream's window, and each new session its
 * connection's.
 */
export function withWideReceiveWindows<T>(make: () => T): T {
  const original = http2.createSecureServer;
  const wrapped = (options: http2.SecureServerOptions, listener?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void) => {
    const server = original({ ...options, settings: { ...options.settings, initialWindowSize: STREAM_WINDOW } }, listener);
    server.on('session', (session) => {
      session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    return server;
  };
  (http2 as { createSecureServer: typeof original }).createSecureServer = wrapped as typeof original;
  try {
    return make();
  } finally {
    (http2 as { createSecureServer: typeof original }).createSecureServer = original;
  }
}
