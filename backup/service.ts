import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { Readable } from 'node:stream';
import { extractCheckpointArchive } from '../checkpoint/archive';
import { InvalidArgumentError, LimitError, NotFoundError } from '../lib/errors';
import { faultPoint } from '../lib/fault';
import { validateName } from '../lib/names';
import { MAX_CHUNK } from '../daemon/limits';
import { writeMessage } from '../daemon/bulk';
import { BackupMessage, Backups, BackupTrailer } from '../daemon/proto';
import { CallContext, clientStream, DaemonContext, Handler, serverStream, unary } from '../daemon/server';
import { withIdleLimit } from '../daemon/upload';
import type { SendFormat } from '../storage';
import { validateSnapshotName } from '../storage';
import { KeepPolicy, parseKeepPolicy } from './retention';
import { BackupStore, hashing, StoredBackup } from './store';

/**
 * tsvz.v1.Backups: this host's backup store over gRPC. Every caller is a
 * trusted host, and sees, sends and fetches only its own backups (keyed by
 * its certificate's fingerprint). Every field it sends is checked as if
 * typed here.
 */
export function backupService(d: DaemonContext, opts: { pool?: string; keep?: KeepPolicy } = {}): Handler[] {
  const store = new BackupStore(d.root, opts);
  void store.pool().catch((err: Error) => d.log.error('backup store unusable', { error: err.message }));
  const caller = (ctx: CallContext) => {
    if (!ctx.client) throw new InvalidArgumentError('backups need a trusted caller');
    return ctx.client;
  };

  /** A Receive-like call's header, its chunks as a byte stream (bounded, counted), and the trailer once the last chunk is read. */
  const incoming = async (input: AsyncIterable<BackupMessage>, ctx: CallContext) => {
    const it = input[Symbol.asyncIterator]();
    const next = () => withIdleLimit(it.next(), d.limits.idleMs, ctx.signal);
    const first = await next();
    const h = first.done ? undefined : first.value.header;
    if (!h) throw new InvalidArgumentError('a backup starts with its header');
    let trailer: BackupTrailer | undefined;
    let total = 0;
    const body = Readable.from((async function* () {
      for (;;) {
        const r = await next();
        if (r.done) return;
        if (r.value.trailer) { trailer = r.value.trailer; continue; }
        if (trailer) throw new InvalidArgumentError('nothing may follow a backup\'s trailer');
        const data = r.value.chunk?.data;
        if (!data) throw new InvalidArgumentError('a backup sends its header once, then chunks, then its trailer');
        if (data.length > MAX_CHUNK) throw new LimitError(`a chunk of ${data.length} bytes is over ${MAX_CHUNK}`);
        total += data.length;
        if (total > d.limits.maxUploadBytes) throw new LimitError(`the backup is over this host's limit of ${d.limits.maxUploadBytes} bytes`);
        d.metrics.streamBytes.add({ method: ctx.method, direction: 'in' }, data.length);
        if (total > data.length) await faultPoint('backup:receiving'); // tests kill the daemon here, mid-stream
        yield Buffer.from(data);
      }
    })(), { objectMode: false });
    ctx.signal.addEventListener('abort', () => body.destroy(new InvalidArgumentError('the sender went away during the transfer')), { once: true });
    return { h, body, trailer: () => trailer };
  };

  return [
    unary(Backups.Offer, async (req, ctx) => {
      const container = validateName(req.container ?? '');
      const me = caller(ctx);
      return { formats: await store.formats(), snapshots: store.list({ source: me.fingerprint, container }).map((b) => b.snapshot) };
    }),

    clientStream(Backups.Receive, async (input, ctx) => {
      const me = caller(ctx);
      const { h, body, trailer } = await incoming(input, ctx);
      const format = h.format as SendFormat;
      if (!['btrfs', 'zfs', 'tar'].includes(format)) throw new InvalidArgumentError(`unknown stream format "${String(h.format).slice(0, 20)}"`);
      const r = await store.receive({
        source: me.fingerprint, sourceName: me.name,
        container: h.container ?? '', snapshot: h.snapshot ?? '', createdAt: h.createdAt ?? '', format,
        ...(h.parent ? { parent: h.parent } : {}), configJson: h.configJson ?? '',
        ...(h.schedule ? { schedule: validateName(h.schedule, 'schedule') } : {}),
        ...(h.keep ? { keep: parseKeepPolicy(h.keep) } : {}),
        ...(h.timeZone ? { timeZone: h.timeZone } : {}),
      }, body, trailer);
      return { bytes: r.bytes, pruned: r.pruned };
    }),

    clientStream(Backups.ReceiveState, async (input, ctx) => {
      const me = caller(ctx);
      const { h, body, trailer } = await incoming(input, ctx);
      if (h.format !== 'checkpoint') throw new InvalidArgumentError(`a backup's memory comes as a checkpoint archive, not "${String(h.format).slice(0, 20)}"`);
      // Signed by the sender itself, every file against its manifest, before it is kept.
      const trust = { signers: new Map([[me.fingerprint, { name: me.name, publicKey: new crypto.X509Certificate(me.certificatePem).publicKey }]]), acceptUnsigned: false };
      const check = async (file: string) => {
        await fs.promises.mkdir(d.root.cacheDir, { recursive: true, mode: 0o700 });
        const scratch = await fs.promises.mkdtemp(path.join(d.root.cacheDir, 'state-check-'));
        try {
          await extractCheckpointArchive(file, scratch, { trust, maxBytes: d.limits.maxUploadBytes });
        } finally {
          await fs.promises.rm(scratch, { recursive: true, force: true });
        }
      };
      const bytes = await store.receiveState(me.fingerprint, validateName(h.container ?? ''), validateSnapshotName(h.snapshot ?? ''), body, trailer, check);
      return { bytes, pruned: [] };
    }),

    unary(Backups.List, async (req, ctx) => {
      const me = caller(ctx);
      const container = req.container ? validateName(req.container) : undefined;
      return { backups: store.list({ source: me.fingerprint, container }).map(entryOf) };
    }),

    serverStream(Backups.Fetch, async (req, out, ctx) => {
      const me = caller(ctx);
      const container = validateName(req.container ?? '');
      const snapshot = validateSnapshotName(req.snapshot ?? '');
      const b = store.list({ source: me.fingerprint, container }).find((x) => x.snapshot === snapshot);
      if (!b) throw new NotFoundError(`this host holds no backup ${snapshot} of ${container} from you`);
      // A restore takes a full stream: tar, which every pool receives.
      for await (const m of framed({ ...b, keep: undefined, stateful: b.state !== undefined }, await store.send(b, 'tar'), 'tar')) await writeMessage(out, m, ctx.signal);
    }),

    serverStream(Backups.FetchState, async (req, out, ctx) => {
      const me = caller(ctx);
      const container = validateName(req.container ?? '');
      const snapshot = validateSnapshotName(req.snapshot ?? '');
      const b = store.list({ source: me.fingerprint, container }).find((x) => x.snapshot === snapshot);
      if (!b?.state) throw new NotFoundError(`this host holds no memory of backup ${snapshot} of ${container} from you`);
      for await (const m of framed({ ...b, keep: undefined }, fs.createReadStream(store.stateFile(b)), 'checkpoint')) await writeMessage(out, m, ctx.signal);
    }),
  ];
}

export function entryOf(b: StoredBackup) {
  return { container: b.container, snapshot: b.snapshot, createdAt: b.createdAt, format: b.format, parent: b.parent, bytes: b.bytes, sha256: b.sha256, schedule: b.schedule, receivedAt: b.receivedAt, stateful: b.state !== undefined };
}

/** A stream as BackupMessages: its header, chunks of at most MAX_CHUNK, and the trailer with its sha256. */
export async function* framed(b: Pick<StoredBackup, 'container' | 'snapshot' | 'createdAt' | 'parent' | 'configJson' | 'schedule' | 'timeZone'> & { keep?: string; stateful?: boolean }, stream: Readable, format: SendFormat | 'checkpoint'): AsyncGenerator<BackupMessage> {
  yield { header: { container: b.container, snapshot: b.snapshot, createdAt: b.createdAt, format, parent: b.parent, configJson: b.configJson, schedule: b.schedule, keep: b.keep, timeZone: b.timeZone, ...(b.stateful ? { stateful: true } : {}) } };
  const h = hashing(stream);
  for await (const data of h.stream as AsyncIterable<Buffer>) {
    for (let at = 0; at < data.length; at += MAX_CHUNK) yield { chunk: { data: data.subarray(at, at + MAX_CHUNK) } };
  }
  yield { trailer: h.digest() };
}
