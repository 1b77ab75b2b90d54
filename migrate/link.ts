import fs = require('node:fs');
import type { Readable } from 'node:stream';
import type { RemoteClient } from '../daemon/client';
import { tsvzVersion } from '../daemon/host-description';
import { MAX_CHUNK } from '../daemon/limits';
import { ImportMessage, Migration } from '../daemon/proto';
import type { TargetLink } from './source';

/** The target's daemon as a TargetLink: tsvz.v1.Migration over the remote's mutual TLS. */
export function grpcTargetLink(client: RemoteClient): TargetLink {
  return {
    peer: client.peer.name,
    peerFingerprint: client.peer.fingerprint,
    prepare: (req) => client.unary(Migration.Prepare, { ...req, tsvzVersion: tsvzVersion() }),
    sendFiles: async (id, name, body) => (await client.clientStream(Migration.ReceiveFiles, upload(id, name, body))).bytes ?? 0,
    sendCheckpoint: (id, name, file) => client.clientStream(Migration.ReceiveCheckpoint, upload(id, name, fs.createReadStream(file, { highWaterMark: MAX_CHUNK }), fs.statSync(file).size)),
    commit: async (id) => { await client.unary(Migration.Commit, { id }, { timeoutMs: 30_000 }); },
    abort: async (id) => { await client.unary(Migration.Abort, { id }, { timeoutMs: 30_000 }); },
  };
}

/** A header naming the migration, then `body` in chunks of at most MAX_CHUNK. */
async function* upload(id: string, name: string, body: Readable, sizeBytes?: number): AsyncGenerator<ImportMessage> {
  yield { header: { name, migration: id, sizeBytes } };
  for await (const data of body as AsyncIterable<Buffer>) {
    for (let at = 0; at < data.length; at += MAX_CHUNK) yield { chunk: { data: data.subarray(at, at + MAX_CHUNK) } };
  }
}
