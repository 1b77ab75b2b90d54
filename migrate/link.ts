import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { TsvzError } from '../lib/errors';
import type { RemoteClient } from '../daemon/client';
import { newTicket } from '../daemon/data-channel';
import { tsvzVersion } from '../daemon/host-description';
import { drained } from '../daemon/bulk';
import { withRemovalList } from './removal-list';
import { ImportHeader, ImportMessage, Method, Migration, MigratePagesOut, MigrateRestored } from '../daemon/proto';
import type { PageLink } from './page-pump';
import type { TargetLink } from './source';

/**
 * The target's daemon as a TargetLink: tsvz.v1.Migration over the remote's
 * mutual TLS, the uploads' bytes over its data channel (the port Prepare
 * answers with).
 */
export function grpcTargetLink(client: RemoteClient): TargetLink {
  let dataPort = 0;
  /** `m` with a header naming a ticket, and `body` over the data channel with that ticket; the call's answer decides. */
  const upload = <Res>(m: Method<ImportMessage, Res>, id: string, name: string, body: Readable, signal?: AbortSignal): Promise<Res> => {
    if (!dataPort) return Promise.reject(new TsvzError('ENOTSUP', `${client.peer.name} named no data channel for the migration's bytes`, { hint: 'update tsvz there' }));
    return sendOverData(client, dataPort, m, { name, migration: id }, body, signal);
  };
  return {
    peer: client.peer.name,
    peerFingerprint: client.peer.fingerprint,
    prepare: async (req, signal) => {
      const answer = await client.unary(Migration.Prepare, { ...req, tsvzVersion: tsvzVersion() }, { signal });
      dataPort = answer.dataPort ?? 0;
      return answer;
    },
    sendFiles: async (id, name, body, signal) => (await upload(Migration.ReceiveFiles, id, name, body, signal)).bytes ?? 0,
    sendFileChanges: async (id, name, removed, body, signal) => (await upload(Migration.ReceiveFileChanges, id, name, withRemovalList(removed, body), signal)).bytes ?? 0,
    sendCheckpoint: (id, name, body, signal) => upload(Migration.ReceiveCheckpoint, id, name, body, signal),
    commit: async (id) => { await client.unary(Migration.Commit, { id }, { timeoutMs: 30_000 }); },
    abort: async (id) => { await client.unary(Migration.Abort, { id }, { timeoutMs: 30_000 }); },
    pages: (id, onRestored, round) => pagesCall(client, dataPort, id, onRestored, round),
  };
}

/** How much of the memory may wait on the data connection (sent, not yet taken by the kernel). */
const SEND_AHEAD = 4 * 1024 * 1024;

/** How long the target's answer may take to say why, once the connection carrying its bytes broke. */
const ANSWER_GRACE_MS = 5_000;

/**
 * The call (its header with a fresh ticket) and, beside it, `body` over a
 * data connection with that ticket. When the connection breaks, the
 * target's answer, which says why (a refused archive breaks it), wins over
 * the broken pipe's; the call is cancelled if none comes.
 */
async function sendOverData<Res>(client: RemoteClient, port: number, m: Method<ImportMessage, Res>, header: ImportHeader, body: Readable, signal?: AbortSignal): Promise<Res> {
  const ticket = newTicket();
  const call = new AbortController();
  const onAbort = () => call.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const answer = client.clientStream(m, [{ header: { ...header, dataTicket: ticket } }], { signal: call.signal });
  answer.catch(() => undefined);
  try {
    try {
      const socket = await client.openData(port, ticket, 30_000);
      await pipeline(body, socket, { signal: call.signal });
    } catch (err) {
      body.destroy();
      const grace = new AbortController();
      const theirs = await Promise.race([answer.then(() => undefined, (e: unknown) => e), delay(ANSWER_GRACE_MS, undefined, { signal: grace.signal }).catch(() => undefined)]);
      grace.abort();
      call.abort();
      throw theirs ?? err;
    }
    return await answer;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The memory's channel as a PageLink: the Pages call names the migration and a
 * ticket and carries `restored`; CRIU's bytes go both ways over a data
 * connection with that ticket. The connection's end counts as the end of
 * the transfer only once the call has ended well: a target that failed
 * (and cut the connection) never looks finished to the page server here.
 */
function pagesCall(client: RemoteClient, port: number, id: string, onRestored: (r: MigrateRestored) => void, round = 0): PageLink {
  const ticket = newTicket();
  const { call, failure } = client.duplex(Migration.Pages);
  call.write({ ref: { id, dataTicket: ticket, ...(round ? { round } : {}) } });
  const opened = client.openData(port, ticket, 30_000);
  opened.catch(() => undefined);
  let broken: Error | undefined;
  const ended = (async () => {
    try {
      for await (const m of call as AsyncIterable<MigratePagesOut>) if (m.restored) onRestored(m.restored);
    } catch (err) {
      broken = failure(err);
      (await opened.catch(() => undefined))?.destroy(broken);
      throw broken;
    }
  })();
  ended.catch(() => undefined);
  async function* incoming(): AsyncGenerator<Buffer> {
    const socket = await opened;
    try {
      for await (const data of socket as AsyncIterable<Buffer>) yield data;
    } catch (err) {
      throw broken ?? err;
    }
    await ended;
  }
  return {
    incoming: incoming(),
    send: async (data) => {
      const socket = await opened;
      if (broken) throw broken;
      // Up to SEND_AHEAD queued on the connection before CRIU's socket is read again: the dump keeps writing while TLS catches up.
      socket.write(data);
      if (socket.writableLength > SEND_AHEAD) await drained(socket);
    },
    end: () => {
      void opened.then((s) => s.end(), () => undefined);
      call.end();
    },
    close: () => {
      void opened.then((s) => s.destroy(), () => undefined);
      call.cancel();
    },
  };
}
