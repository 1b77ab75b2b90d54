import type { Readable } from 'node:stream';
import type { RemoteClient } from '../daemon/client';
import { tsvzVersion } from '../daemon/host-description';
import { MAX_CHUNK } from '../daemon/limits';
import { writeMessage } from '../daemon/bulk';
import { ImportMessage, Migration, MigratePagesOut, MigrateRestored } from '../daemon/proto';
import type { PageLink } from './page-pump';
import type { TargetLink } from './source';

/** The target's daemon as a TargetLink: tsvz.v1.Migration over the remote's mutual TLS. */
export function grpcTargetLink(client: RemoteClient): TargetLink {
  return {
    peer: client.peer.name,
    peerFingerprint: client.peer.fingerprint,
    prepare: (req, signal) => client.unary(Migration.Prepare, { ...req, tsvzVersion: tsvzVersion() }, { signal }),
    sendFiles: async (id, name, body, signal) => (await client.clientStream(Migration.ReceiveFiles, upload(id, name, body), { signal })).bytes ?? 0,
    sendFileChanges: async (id, name, removed, body, signal) => (await client.clientStream(Migration.ReceiveFileChanges, upload(id, name, body, removed), { signal })).bytes ?? 0,
    sendCheckpoint: (id, name, body, signal) => client.clientStream(Migration.ReceiveCheckpoint, upload(id, name, body), { signal }),
    commit: async (id) => { await client.unary(Migration.Commit, { id }, { timeoutMs: 30_000 }); },
    abort: async (id) => { await client.unary(Migration.Abort, { id }, { timeoutMs: 30_000 }); },
    pages: (id, onRestored) => pagesCall(client, id, onRestored),
  };
}

/** The Pages call as a PageLink: the migration's id first, then CRIU's bytes both ways; `restored` said on the way. */
function pagesCall(client: RemoteClient, id: string, onRestored: (r: MigrateRestored) => void): PageLink {
  const { call, failure } = client.duplex(Migration.Pages);
  call.write({ ref: { id } });
  async function* incoming(): AsyncGenerator<Buffer> {
    try {
      for await (const m of call as AsyncIterable<MigratePagesOut>) {
        if (m.restored) onRestored(m.restored);
        else if (m.chunk?.data) yield m.chunk.data;
      }
    } catch (err) {
      throw failure(err);
    }
  }
  return {
    incoming: incoming(),
    send: (data) => writeMessage(call, { chunk: { data } }),
    end: () => call.end(),
    close: () => call.cancel(),
  };
}

/** A header naming the migration, then `body` in chunks of MAX_CHUNK (the last one shorter): few, full messages. */
async function* upload(id: string, name: string, body: Readable, removed?: string[]): AsyncGenerator<ImportMessage> {
  yield { header: { name, migration: id, ...(removed ? { removed } : {}) } };
  let held: Buffer[] = [];
  let heldBytes = 0;
  for await (const data of body as AsyncIterable<Buffer>) {
    held.push(data);
    heldBytes += data.length;
    while (heldBytes >= MAX_CHUNK) {
      const all = held.length === 1 ? held[0] : Buffer.concat(held);
      yield { chunk: { data: all.subarray(0, MAX_CHUNK) } };
      held = [all.subarray(MAX_CHUNK)];
      heldBytes = all.length - MAX_CHUNK;
    }
  }
  if (heldBytes > 0) yield { chunk: { data: Buffer.concat(held) } };
}
