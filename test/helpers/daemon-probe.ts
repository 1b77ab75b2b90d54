/**
 * Raw calls to a remote's daemon, for what the CLI cannot send (a NUL in a
 * name, a 100 MiB message, an upload that never ends) and for load. Runs
 * inside a test host's network namespace:
 *   node daemon-probe.js ROOT REMOTE SCENARIO [ARGS...]
 * and prints one JSON object.
 */
import { Root } from '../../lib/root';
import { RemoteClient } from '../../daemon/client';
import { Containers, Health } from '../../daemon/proto';
import type { TsvzError } from '../../lib/errors';

const BAD_NAMES = ['../x', 'a/b', 'nul\0byte', 'x'.repeat(65)];

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return (err as TsvzError).code ?? String(err);
  }
}

async function main(): Promise<unknown> {
  const [rootDir, remote, scenario, ...args] = process.argv.slice(2);
  // A hostile peer: its own send limit does not hold it back.
  const client = await RemoteClient.connect(new Root(rootDir), remote, { 'grpc.max_send_message_length': -1 });
  try {
    switch (scenario) {
      case 'names': {
        const out: { rpc: string; field: string; name: string; code: string }[] = [];
        const drain = async (it: AsyncIterable<unknown>) => { for await (const _ of it) { /* nothing */ } };
        for (const bad of BAD_NAMES) {
          const calls: [string, string, () => Promise<unknown>][] = [
            ['Info', 'name', () => client.unary(Containers.Info, { name: bad })],
            ['Start', 'name', () => client.unary(Containers.Start, { name: bad })],
            ['Stop', 'name', () => client.unary(Containers.Stop, { name: bad })],
            ['Checkpoint', 'name', () => client.unary(Containers.Checkpoint, { name: bad })],
            ['Checkpoint', 'id', () => client.unary(Containers.Checkpoint, { name: args[0], id: bad })],
            ['Snapshot', 'name', () => client.unary(Containers.Snapshot, { name: bad })],
            ['Snapshot', 'snapshot', () => client.unary(Containers.Snapshot, { name: args[0], snapshot: bad })],
            ['Logs', 'name', () => drain(client.serverStream(Containers.Logs, { name: bad }))],
            ['RestoreImport', 'name', () => client.clientStream(Containers.RestoreImport, [{ header: { name: bad } }, { chunk: { data: Buffer.alloc(10) } }])],
          ];
          for (const [rpc, field, call] of calls) out.push({ rpc, field, name: JSON.stringify(bad), code: await codeOf(call()) });
        }
        return out;
      }
      case 'big':
        return { code: await codeOf(client.unary(Containers.Info, { name: 'x'.repeat(100 * 1024 * 1024) })), after: await codeOf(client.unary(Containers.List, {})) };
      case 'endless': {
        let sent = 0;
        const chunk = Buffer.alloc(1024 * 1024, 0x61);
        const deadline = Date.now() + Number(args[1] ?? 60_000);
        const messages = (async function* () {
          yield { header: { name: args[0] } };
          // Never ends by itself: only the daemon's limit (or the probe's own bound) stops it.
          while (Date.now() < deadline) { sent += chunk.length; yield { chunk: { data: chunk } }; }
        })();
        const code = await codeOf(client.clientStream(Containers.RestoreImport, messages));
        return { code, sentMiB: Math.round(sent / 1024 / 1024) };
      }
      case 'idle': {
        const started = Date.now();
        const messages = (async function* () {
          yield { header: { name: args[0] } };
          await new Promise((r) => setTimeout(r, Number(args[1] ?? 30_000)));
        })();
        const code = await codeOf(client.clientStream(Containers.RestoreImport, messages));
        return { code, ms: Date.now() - started };
      }
      case 'health':
        return await client.unary(Health.Check, { service: '' });
      default:
        throw new Error(`unknown scenario ${scenario}`);
    }
  } finally {
    client.close();
  }
}

main().then((out) => { process.stdout.write(JSON.stringify(out) + '\n'); process.exit(0); }, (err: unknown) => {
  process.stdout.write(JSON.stringify({ error: String(err), code: (err as TsvzError).code }) + '\n');
  process.exit(1);
});
