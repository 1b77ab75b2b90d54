import fs = require('node:fs');
import { InvalidArgumentError } from '../../lib/errors';
import { validateName } from '../../lib/names';
import { Container } from '../../runtime/container';
import { chunkWriter } from '../bulk';
import { infoToWire } from '../convert';
import { Containers } from '../proto';
import { clientStream, DaemonContext, Handler, serverStream, unary } from '../server';
import { receiveUpload } from '../upload';
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
