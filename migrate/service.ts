import { PassThrough, pipeline, Readable } from 'node:stream';
import { InvalidArgumentError, LimitError, TsvzError } from '../lib/errors';
import { tsvzVersion } from '../daemon/host-description';
import { drained, writeMessage } from '../daemon/bulk';
import { ImportMessage, MigrateEvent, Migration } from '../daemon/proto';
import { bidiStream, CallContext, clientStream, DaemonContext, Handler, serverStream, unary } from '../daemon/server';
import { validateName } from '../lib/names';
import { archiveTrust } from '../daemon/signers';
import { withIdleLimit } from '../daemon/upload';
import { validateTicket } from '../daemon/data-channel';
import { MigrationJournal, MigrationMode, MigrationRecord, validateMigrationId } from './journal';
import { takeRemovalList } from './removal-list';
import { MigrationTarget } from './target';
import type { PageLink } from './page-pump';

/**
 * tsvz.v1.Migration: the target's side over gRPC (migrate/target.ts does
 * the work). Only a trusted client may call it, and each migration only
 * from the client that prepared it. A daemon, as it starts, undoes the
 * transfers its last run left half-done.
 */
export function migrationService(d: DaemonContext): Handler[] {
  const target = new MigrationTarget(d.root, () => archiveTrust(d.root));
  const journal = new MigrationJournal(d.root);
  void target.recover().then(
    (undone) => { for (const r of undone) d.log.warn('migration undone after a restart', { id: r.id, name: r.name }); },
    (err: Error) => d.log.error('migration recovery failed', { error: err.message }),
  );

  /** The record of `id`, refused unless the caller is the host that prepared it. */
  const own = (id: unknown, ctx: CallContext): MigrationRecord => {
    const r = journal.get(validateMigrationId(id));
    if (r.peerFingerprint !== ctx.client?.fingerprint) throw new TsvzError('EPERM', `migration ${String(id)} belongs to another host`);
    return r;
  };

  /**
   * An upload's header (the migration, which must be the caller's), and
   * its body: the data channel's connection the header names (the bytes
   * raw, read as the receiver reads), which `run` is given and which ends
   * with it.
   */
  const upload = async <T>(input: AsyncIterable<ImportMessage>, ctx: CallContext, run: (r: MigrationRecord, body: Readable) => Promise<T>): Promise<T> => {
    const it = input[Symbol.asyncIterator]();
    const first = await withIdleLimit(it.next(), d.limits.idleMs, ctx.signal);
    const header = first.done ? undefined : first.value.header;
    if (!header) throw new InvalidArgumentError('an upload starts with its header');
    const r = own(header.migration, ctx);
    if (!header.dataTicket) throw new InvalidArgumentError('a migration upload names its data channel ticket', 'the source needs a tsvz that sends over the data channel');
    const socket = await d.data.expect(validateTicket(header.dataTicket), ctx.client!.fingerprint, d.limits.handshakeMs, ctx.signal);
    // Read ahead of the receiver by up to READ_AHEAD: while it waits on a write to disk, the bytes keep coming.
    const body = socket.pipe(new PassThrough({ highWaterMark: READ_AHEAD }));
    const fail = (err: Error) => { body.destroy(err); socket.destroy(); };
    // A connection cut short ends the body early: its receiver finds it truncated (tar, the archive's sizes, btrfs/zfs receive).
    socket.on('error', (err) => body.destroy(err));
    // A connection that sends nothing for the idle limit ends, and the receive undoes itself.
    socket.setTimeout(d.limits.idleMs, () => fail(new InvalidArgumentError(`the source sent nothing for ${d.limits.idleMs} ms`)));
    ctx.signal.addEventListener('abort', () => fail(new InvalidArgumentError('the source went away during the transfer')), { once: true });
    try {
      return await run(r, body);
    } finally {
      d.metrics.streamBytes.add({ method: ctx.method, direction: 'in' }, socket.bytesRead);
      body.destroy();
      socket.destroy();
    }
  };

  return [
    unary(Migration.Prepare, async (req, ctx) => {
      if (req.filesBytes !== undefined && req.filesBytes > d.limits.maxUploadBytes) {
        throw new LimitError(`the container's files (${req.filesBytes} bytes) are over this host's upload limit of ${d.limits.maxUploadBytes} bytes`);
      }
      const { criuVersion, format } = await target.prepare({
        id: req.id ?? '', name: req.name ?? '', configJson: req.configJson ?? '', pool: req.pool,
        peer: ctx.client?.name ?? ctx.peer, peerFingerprint: ctx.client?.fingerprint,
        cpuinfo: req.cpuinfo, checkOnly: req.checkOnly === true, mode: req.mode as MigrationMode | undefined, formats: req.formats,
      });
      return { tsvzVersion: tsvzVersion(), criuVersion, format, dataPort: d.data.port };
    }),

    clientStream(Migration.ReceiveFiles, (input, ctx) => upload(input, ctx, async (r, body) => ({ bytes: await target.receiveFiles(r.id, body, d.limits.maxUploadBytes) }))),

    clientStream(Migration.ReceiveFileChanges, (input, ctx) => upload(input, ctx, async (r, body) => {
      // The paths removed since the first pass come first in the stream (migrate/removal-list.ts), then the changes.
      const { removed, rest } = await takeRemovalList(body);
      return { bytes: await target.receiveFileChanges(r.id, rest, removed, d.limits.maxUploadBytes) };
    })),

    clientStream(Migration.ReceiveCheckpoint, (input, ctx) => upload(input, ctx, (r, body) => target.receiveCheckpoint(r.id, body, d.limits.maxUploadBytes))),

    unary(Migration.Commit, async (req, ctx) => {
      const r = await target.commit(own(req.id, ctx).id);
      return { phase: r.phase, name: r.name };
    }),

    unary(Migration.Abort, async (req, ctx) => {
      const r = await target.abort(own(req.id, ctx).id, 'the source aborted');
      return { phase: r.phase, name: r.name };
    }),

    bidiStream(Migration.Pages, async (input, out, ctx) => {
      const it = input[Symbol.asyncIterator]();
      const first = await withIdleLimit(it.next(), d.limits.idleMs, ctx.signal);
      const ref = first.done ? undefined : first.value.ref;
      if (!ref) throw new InvalidArgumentError('a Pages call starts with its migration');
      const r = own(ref.id, ctx);
      // The pages go over the data channel; the call carries `restored`, and its end (or cancellation) says how the source ended.
      if (!ref.dataTicket) throw new InvalidArgumentError('a Pages call names its data channel ticket', 'the source needs a tsvz that sends pages over the data channel');
      const socket = await d.data.expect(validateTicket(ref.dataTicket), ctx.client!.fingerprint, d.limits.handshakeMs, ctx.signal);
      socket.setNoDelay(true);
      const halfClosed = Promise.race([
        (async () => {
          const more = await it.next();
          if (!more.done) throw new InvalidArgumentError('a Pages call sends its migration, then nothing: the pages go over the data channel');
        })(),
        new Promise<never>((_resolve, reject) => {
          const gone = () => reject(new InvalidArgumentError('the source went away while its memory was moving'));
          if (ctx.signal.aborted) gone();
          ctx.signal.addEventListener('abort', gone, { once: true });
        }),
      ]);
      halfClosed.catch(() => undefined);
      const link: PageLink = {
        // A clean end of the connection counts only once the source ended its call too: a broken source never looks finished.
        incoming: (async function* () {
          // Read ahead of CRIU by up to READ_AHEAD: while its socket is full, the bytes keep coming, and the next write takes them all.
          const ahead = new PassThrough({ highWaterMark: READ_AHEAD });
          pipeline(socket, ahead, () => undefined); // the socket's failure fails `ahead`, and so this loop
          for await (const data of ahead as AsyncIterable<Buffer>) yield data;
          await halfClosed;
        })(),
        send: async (data) => {
          if (!socket.write(data)) await drained(socket, ctx.signal);
        },
        // This side ends once the last page is in and `committed` is journaled: below.
        end: () => undefined,
        close: () => socket.destroy(),
      };
      try {
        if (r.mode === 'post') {
          const done = await target.pages(r.id, link, (restored) => writeMessage(out, { restored }, ctx.signal));
          d.log.info('post-copy done', { id: r.id, name: r.name, pages: done.pages.copied, of: done.pages.total });
        } else {
          // Stop-and-copy and pre-copy: the source's dump (or a round of it) writes its memory to a page server here.
          const round = ref.round ?? 0;
          const got = await target.receivePages(r.id, link, d.limits.maxUploadBytes, round);
          d.log.info('memory received', { id: r.id, name: r.name, round, bytes: got.bytes });
        }
        socket.end();
      } catch (err) {
        socket.destroy();
        throw err;
      } finally {
        d.metrics.streamBytes.add({ method: ctx.method, direction: 'in' }, socket.bytesRead);
        d.metrics.streamBytes.add({ method: ctx.method, direction: 'out' }, socket.bytesWritten);
      }
    }),

    serverStream(Migration.Run, async (req, out, ctx) => {
      const name = validateName(req.name ?? '');
      const to = validateName(req.to ?? '', 'remote');
      const pool = req.pool ? validateName(req.pool, 'pool') : undefined;
      const mode = req.mode === undefined || req.mode === '' ? 'auto' : req.mode;
      if (mode !== 'auto' && mode !== 'stop' && mode !== 'pre' && mode !== 'post') throw new InvalidArgumentError(`unknown migration mode ${JSON.stringify(mode.slice(0, 20))}`, 'stop, pre, post or auto');
      const { driveCheck, driveMigration } = await import('./drive');
      // Events go out in order, each after the last (a slow caller slows only its own stream).
      let sending = Promise.resolve();
      const send = (ev: MigrateEvent) => { sending = sending.then(() => writeMessage(out, ev, ctx.signal)).catch(() => undefined); };
      d.log.info('migration driven for a client', { name, to, mode, client: ctx.client?.name });
      const cancel = new AbortController();
      ctx.signal.addEventListener('abort', () => cancel.abort(new TsvzError('ECANCELLED', `the migration of ${name} was cancelled by its caller`)), { once: true });
      const result = req.checkOnly
        ? await driveCheck(d.root, name, to, { pool, mode })
        : await driveMigration(d.root, name, to, {
          mode, pool, keepSource: req.keepSource === true, signal: cancel.signal, byDaemon: true,
          onJournaled: (migration) => send({ migration }),
          onPhase: (phase) => send({ phase }),
          onProgress: (p) => send({ progress: { what: p.what, bytes: p.bytes, total: p.total, seconds: p.seconds, bytesPerSec: p.bytesPerSec, etaSec: p.etaSec, done: p.done } }),
        });
      await sending;
      await writeMessage(out, { resultJson: JSON.stringify(result) }, ctx.signal);
    }),

    unary(Migration.Status, async (req) => {
      // Either side asks the other (migrate resolve); a trusted host may read a phase.
      const r = journal.find(validateMigrationId(req.id));
      return { phase: r?.phase ?? 'unknown', name: r?.name ?? '' };
    }),
  ];
}

/** How far the data connection is read ahead of the receiver. */
const READ_AHEAD = 8 * 1024 * 1024;
