import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError, LimitError, TimeoutError, TsvzError } from '../../lib/errors';
import { validateName } from '../../lib/names';
import { Container } from '../../runtime/container';
import { chunkWriter } from '../bulk';
import { infoToWire } from '../convert';
import { MAX_CHUNK } from '../limits';
import { Containers, ImportMessage } from '../proto';
import { CallContext, clientStream, DaemonContext, Handler, serverStream, unary } from '../server';
import { UploadQuota } from '../upload-quota';

/**
 * tsvz.v1.Containers: the CLI's verbs on this host's containers, for a
 * trusted peer. Every name is checked with the CLI's rules before anything
 * else; the verbs are ops/'s, under the same locks as the local CLI.
 */
export function containersService(d: DaemonContext): Handler[] {
  const open = (name: string | undefined) => Container.open(d.root, validateName(name ?? ''));
  const quota = new UploadQuota(d.root, d.limits);

  return [
    unary(Containers.List, async () => {
      const { listContainers } = await import('../../ops/info');
      return { containers: listContainers(d.root).map(infoToWire) };
    }),

    unary(Containers.Info, async (req) => {
      const { containerInfo } = await import('../../ops/info');
      return infoToWire(containerInfo(open(req.name)));
    }),

    unary(Containers.Start, async (req) => {
      const { startContainer } = await import('../../ops/start');
      const state = await startContainer(open(req.name));
      return { initPid: state.initPid };
    }),

    unary(Containers.Stop, async (req) => {
      const { stopContainer } = await import('../../ops/stop');
      const timeout = req.timeoutSeconds ?? 10;
      if (!Number.isFinite(timeout) || timeout < 0 || timeout > 3600) throw new InvalidArgumentError(`invalid stop timeout ${timeout}`, 'give 0 to 3600 seconds');
      await stopContainer(open(req.name), timeout);
      return {};
    }),

    unary(Containers.Checkpoint, async (req) => {
      const { checkpointContainer } = await import('../../ops/checkpoint');
      const c = open(req.name);
      const id = req.id ? validateName(req.id, 'checkpoint') : undefined;
      const meta = await checkpointContainer(c, { name: id, leaveRunning: req.leaveRunning === true, tcpEstablished: req.tcpEstablished === true });
      return { id: meta.id, createdAt: meta.createdAt, criuVersion: meta.criuVersion, dumpMs: meta.dumpMs, frozenMs: meta.frozenMs, sizeBytes: meta.sizeBytes, leaveRunning: meta.leaveRunning };
    }),

    unary(Containers.Snapshot, async (req) => {
      const { createSnapshot } = await import('../../ops/snapshot');
      const c = open(req.name);
      const snap = req.snapshot ? validateName(req.snapshot, 'snapshot') : undefined;
      const rec = await createSnapshot(c, snap, { stateful: req.stateful === true });
      return { name: rec.name, createdAt: rec.createdAt, stateful: rec.stateful === true };
    }),

    serverStream(Containers.Logs, async (req, call, ctx) => {
      const { streamLogs } = await import('../../ops/logs');
      const c = open(req.name);
      if (req.tail !== undefined && !(Number.isInteger(req.tail) && req.tail >= 0)) throw new InvalidArgumentError(`invalid tail ${req.tail}`);
      const out = chunkWriter(call, ctx.signal, (n) => d.metrics.streamBytes.add({ method: ctx.method, direction: 'out' }, n));
      await streamLogs(c, out, { follow: req.follow === true, tail: req.tail, signal: ctx.signal });
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }, { follows: true }),

    clientStream(Containers.RestoreImport, async (input, ctx) => {
      const { restoreImported } = await import('../../ops/import');
      const { archiveTrust } = await import('../signers');
      const staged = await receiveUpload(d, quota, input, ctx);
      try {
        // An upload is as hostile as any archive: signed by this host or one it trusts, or refused.
        const { state, imported } = await restoreImported(d.root, staged.name, staged.file, { trust: archiveTrust(d.root) });
        return { initPid: state.initPid, sourceContainer: imported.meta.container, checkpoint: imported.meta.id };
      } finally {
        fs.rmSync(staged.file, { force: true });
      }
    }),
  ];
}

/**
 * An upload (ImportHeader, then chunks) into a file under ROOT/daemon/incoming/
 * whose name the daemon picks. Bounded in total bytes, in idle time and by
 * the shared disk quota; a broken limit ends the call (RESOURCE_EXHAUSTED,
 * or DEADLINE_EXCEEDED for a stall) and leaves no file behind.
 */
async function receiveUpload(d: DaemonContext, quota: UploadQuota, input: AsyncIterable<ImportMessage>, ctx: CallContext): Promise<{ name: string; file: string }> {
  const it = input[Symbol.asyncIterator]();
  const next = () => withIdleLimit(it.next(), d.limits.idleMs, ctx.signal);
  const first = await next();
  const header = first.done ? undefined : first.value.header;
  if (!header) throw new InvalidArgumentError('an import starts with its header');
  const name = validateName(header.name ?? '');
  if (header.sizeBytes !== undefined && header.sizeBytes > d.limits.maxUploadBytes) {
    throw new LimitError(`the archive (${header.sizeBytes} bytes) is over this host's upload limit of ${d.limits.maxUploadBytes} bytes`);
  }
  fs.mkdirSync(quota.dir, { recursive: true, mode: 0o700 });
  const file = path.join(quota.dir, `${crypto.randomBytes(8).toString('hex')}.archive`);
  const reservation = quota.open();
  const handle = await fs.promises.open(file, 'wx', 0o600);
  let ok = false;
  try {
    let total = 0;
    for (;;) {
      const r = await next();
      if (r.done) break;
      const data = r.value.chunk?.data;
      if (!data) throw new InvalidArgumentError('an import sends its header once, then chunks');
      if (data.length > MAX_CHUNK) throw new LimitError(`a chunk of ${data.length} bytes is over ${MAX_CHUNK}`);
      total += data.length;
      if (total > d.limits.maxUploadBytes) throw new LimitError(`the upload is over this host's limit of ${d.limits.maxUploadBytes} bytes`, 'the stream was stopped');
      await reservation.grow(data.length);
      await handle.write(data);
      d.metrics.streamBytes.add({ method: ctx.method, direction: 'in' }, data.length);
    }
    ok = true;
    return { name, file };
  } finally {
    await handle.close();
    reservation.release();
    if (!ok) fs.rmSync(file, { force: true });
  }
}

/** The next message, or ETIMEDOUT when none comes for `ms`, or the call's end. */
function withIdleLimit<T>(p: Promise<T>, ms: number, signal: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`the upload sent nothing for ${Math.round(ms / 1000)} s`)), ms);
      onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new TsvzError('ECANCELLED', 'cancelled'));
      signal.addEventListener('abort', onAbort);
    }),
  ]).finally(() => {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
  });
}
