import type { Command } from 'commander';
import type { RemoteClient } from '../daemon/client';
import { trace } from '../lib/trace';
import { GlobalOptions, rootOf } from './context';

/**
 * `--remote HOST`: the command runs on HOST's daemon instead of here. The
 * gRPC and TLS code is loaded only then; a local command never loads it.
 */
export function remoteOf(cmd: Command): string | undefined {
  return (cmd.optsWithGlobals() as GlobalOptions).remote;
}

/** Connect to the command's remote, run `body`, close. Errors are the remote's, prefixed with its name. */
export async function onRemote<T>(cmd: Command, body: (client: RemoteClient, api: typeof import('../daemon/proto')) => Promise<T>): Promise<T> {
  const { RemoteClient: Client } = await import('../daemon/client');
  const api = await import('../daemon/proto');
  // TSVZ_TRACE=1 shows the connection's set-up apart (bench/daemon.ts reads it).
  trace('remote: connecting');
  const client = await Client.connect(rootOf(cmd), remoteOf(cmd)!);
  try {
    // The call is made at once and waits for the connection inside grpc-js, so
    // its own preparation overlaps the handshake; the trace marks when the
    // connection was up.
    void client.connect(30_000).then(() => trace('remote: connected'), () => undefined);
    return await body(client, api);
  } finally {
    client.close();
  }
}
