import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { usesRemoteBundle, runKeyOf } from '../../cli/command-names';
import { GRPC_STATUS, TsvzError } from '../../lib/errors';
import { Backups, BadMessage, Codec, Containers, Health, Host, Migration, Trust } from '../../daemon/proto';
import { encodeToken, parseToken } from '../../daemon/tokens';
import { fromWireError, toWireError } from '../../daemon/wire-errors';

function roundTrip<T>(codec: Codec<T>, value: T): void {
  const back = codec.decode(codec.encode(value));
  assert.ok(!(back instanceof BadMessage));
  assert.deepEqual(back, value);
}

test('every message view matches the .proto: a full value survives encode and decode', () => {
  const info = {
    name: 'p1', state: 'running', initPid: 42, ip: '198.18.0.10', createdAt: 'c', startedAt: 's', pool: 'default', template: 'busybox',
    exit: { exitCode: 0, signal: 'SIGKILL', oomKilled: true, finishedAt: 'f' }, checkpoint: 'ck',
    cgroup: { memoryBytes: 1, memoryLimitBytes: 2, memoryPeakBytes: 3, pids: 0, pidsLimit: 5, oomKills: 6, cpuUsageNs: 2 ** 40 }, configJson: '{}',
  };
  roundTrip(Containers.Info.response, info);
  roundTrip(Containers.List.response, { containers: [info] });
  roundTrip(Containers.Info.request, { name: 'p1' });
  roundTrip(Containers.Start.response, { initPid: 7 });
  roundTrip(Containers.Stop.request, { name: 'p1', timeoutSeconds: 0 });
  roundTrip(Containers.Checkpoint.request, { name: 'p1', id: 'c1', leaveRunning: true, tcpEstablished: true });
  roundTrip(Containers.Checkpoint.response, { id: 'c1', createdAt: 'c', criuVersion: '4.2', dumpMs: 1.5, frozenMs: 0, sizeBytes: 2 ** 33, leaveRunning: true });
  roundTrip(Containers.Snapshot.request, { name: 'p1', snapshot: 's1', stateful: true });
  roundTrip(Containers.Snapshot.response, { name: 's1', createdAt: 'c', stateful: true });
  roundTrip(Containers.Logs.request, { name: 'p1', follow: true, tail: 0 });
  roundTrip(Containers.Logs.response, { data: Buffer.from('x') });
  roundTrip(Containers.RestoreImport.request, { header: { name: 'p1', sizeBytes: 10 }, part: 'header' });
  roundTrip(Containers.RestoreImport.request, { chunk: { data: Buffer.from('abc') }, part: 'chunk' });
  roundTrip(Containers.RestoreImport.response, { initPid: 1, sourceContainer: 'p0', checkpoint: 'c1' });
  roundTrip(Migration.Prepare.request, { id: 'a'.repeat(32), name: 'p1', configJson: '{}', tsvzVersion: '0.1.0', criuVersion: '4.2', filesBytes: 2 ** 33, pool: 'fast', cpuinfo: Buffer.from([1, 2]), checkOnly: true });
  roundTrip(Migration.Prepare.request, { id: 'a'.repeat(32), name: 'p1', configJson: '{}', mode: 'post', formats: ['btrfs', 'tar'] });
  roundTrip(Migration.Prepare.response, { tsvzVersion: '0.1.0', criuVersion: '4.2', format: 'btrfs', dataPort: 40123 });
  roundTrip(Migration.ReceiveFiles.request, { header: { name: 'p1', sizeBytes: 1, migration: 'a'.repeat(32), dataTicket: 'f'.repeat(64) }, part: 'header' });
  roundTrip(Migration.Pages.request, { ref: { id: 'a'.repeat(32), dataTicket: 'f'.repeat(64), round: 3 }, part: 'ref' });
  roundTrip(Migration.Run.request, { name: 'p1', to: 'host-a', mode: 'post', pool: 'fast', keepSource: true, checkOnly: true });
  roundTrip(Migration.Run.response, { phase: 'sending memory', part: 'phase' });
  roundTrip(Migration.Run.response, { progress: { what: 'memory', bytes: 2 ** 33, total: 2 ** 34, seconds: 1.5, bytesPerSec: 1e8, etaSec: 3.5, done: true }, part: 'progress' });
  roundTrip(Migration.Run.response, { resultJson: '{}', part: 'resultJson' });
  roundTrip(Migration.ReceiveFiles.response, { bytes: 2 ** 33 });
  roundTrip(Migration.ReceiveCheckpoint.response, { initPid: 9, restoreMs: 12.5 });
  roundTrip(Migration.Commit.request, { id: 'a'.repeat(32) });
  roundTrip(Migration.Status.response, { phase: 'restored', name: 'p1' });
  roundTrip(Host.Describe.response, {
    name: 'h', tsvzVersion: '0.1.0', criuVersion: '4.2', kernel: '6', arch: 'x64', criuFeatures: { lazyPages: true, memDirtyTrack: true },
    cpuFlags: ['sse'], cgroupMode: 'v2', pools: [{ name: 'p', driver: 'zfs', transferFormats: ['zfs', 'tar'], incrementalSend: true, error: 'e' }], fingerprint: 'AB',
  });
  roundTrip(Trust.Enrol.request, { tokenSecret: Buffer.alloc(32, 1), clientName: 'a', certificatePem: 'pem', proof: Buffer.alloc(64, 2) });
  roundTrip(Trust.Enrol.response, { hostName: 'h' });
  roundTrip(Health.Check.response, { status: 'SERVING' });
  roundTrip(Backups.Offer.request, { container: 'p1' });
  roundTrip(Backups.Offer.response, { formats: ['btrfs', 'tar'], snapshots: ['a', 'b'] });
  const header = { container: 'p1', snapshot: 's2', createdAt: 'c', format: 'btrfs', parent: 's1', configJson: '{}', schedule: 'hourly', keep: 'last=3', timeZone: 'Europe/Berlin' };
  roundTrip(Backups.Receive.request, { header, part: 'header' });
  roundTrip(Backups.Receive.request, { chunk: { data: Buffer.from('abc') }, part: 'chunk' });
  roundTrip(Backups.Receive.request, { trailer: { sha256: Buffer.alloc(32, 7), bytes: 2 ** 33 }, part: 'trailer' });
  roundTrip(Backups.Receive.response, { bytes: 2 ** 33, pruned: ['s0'] });
  roundTrip(Backups.List.request, { container: 'p1' });
  roundTrip(Backups.List.response, { backups: [{ container: 'p1', snapshot: 's2', createdAt: 'c', format: 'tar', parent: 's1', bytes: 2 ** 33, sha256: 'ab', schedule: 'hourly', receivedAt: 'r' }] });
  roundTrip(Backups.Fetch.request, { container: 'p1', snapshot: 's2' });
  roundTrip(Backups.Fetch.response, { header, part: 'header' });
});

test("a chunk-only message is written directly, byte for byte as protobufjs writes it, and decodes the same", () => {
  const v1 = (require('../../proto/tsvz-v1') as { tsvz: { v1: Record<string, { fromObject(o: object): unknown; encode(m: unknown): { finish(): Uint8Array } }> } }).tsvz.v1;
  for (const size of [1, 127, 128, 16_383, 16_384, 1 << 20]) {
    const data = Buffer.alloc(size, size & 0xff);
    for (const [codec, type] of [[Migration.ReceiveCheckpoint.request, 'ImportMessage'], [Migration.Pages.request, 'MigratePagesIn'], [Migration.Pages.response, 'MigratePagesOut'], [Backups.Receive.request, 'BackupMessage']] as const) {
      const fast = (codec as Codec<unknown>).encode({ chunk: { data } });
      const T = v1[type];
      assert.ok(fast.equals(Buffer.from(T.encode(T.fromObject({ chunk: { data } })).finish())), `${type}, ${size} bytes`);
      assert.deepEqual((codec as Codec<unknown>).decode(fast), { chunk: { data }, part: 'chunk' });
    }
  }
  // Anything more than a chunk goes through protobufjs.
  roundTrip(Migration.ReceiveCheckpoint.request, { header: { name: 'p1', migration: 'a'.repeat(32) }, part: 'header' });
});

test('bytes that are not the message decode to a BadMessage, never a throw', () => {
  assert.ok(Containers.Info.request.decode(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])) instanceof BadMessage);
});

test('a token carries the fingerprint and secret; anything else is EINVAL', () => {
  const fp = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0').toUpperCase()).join(':');
  const secret = Buffer.alloc(32, 7);
  const t = parseToken(encodeToken(fp, secret));
  assert.equal(t.fingerprint, fp);
  assert.deepEqual(t.secret, secret);
  for (const bad of ['', 'x', encodeToken(fp, secret).slice(1), `${encodeToken(fp, secret)}=`, 'a'.repeat(300)]) {
    assert.throws(() => parseToken(bad), (e: TsvzError) => e.code === 'EINVAL');
  }
});

test('an error crosses the wire with its code and hint, and comes back prefixed with the host', () => {
  const wire = toWireError(new TsvzError('EBUSY', 'container p1 is busy', { hint: 'retry' }), grpc.Metadata);
  assert.equal(wire.code, GRPC_STATUS.ABORTED);
  const back = fromWireError('host-b', wire);
  assert.equal(back.code, 'EBUSY');
  assert.equal(back.message, 'host-b: container p1 is busy');
  assert.equal(back.hint, 'retry');
  // grpc-js's own statuses carry no tsvz code: mapped back by status.
  assert.equal(fromWireError('h', { code: GRPC_STATUS.RESOURCE_EXHAUSTED, details: 'Received message larger than max' }).code, 'ELIMIT');
  assert.equal(fromWireError('h', { code: GRPC_STATUS.UNAVAILABLE, details: 'No connection established' }).code, 'EUNAVAILABLE');
});

test('--remote and the daemon commands run from the remote bundle, with caches of their own', () => {
  const argv = (...a: string[]) => ['node', 'tsvz', ...a];
  assert.equal(runKeyOf(argv('--remote', 'b', 'list')), 'list@remote');
  assert.equal(runKeyOf(argv('--remote=b', 'checkpoint', 'p1')), 'checkpoint-create@remote');
  assert.equal(runKeyOf(argv('remote', 'add', 'b', 'x')), 'remote-add');
  assert.equal(runKeyOf(argv('daemon')), 'daemon-run');
  assert.equal(usesRemoteBundle(argv('list')), false);
  assert.equal(usesRemoteBundle(argv('doctor')), false);
  for (const a of [['--remote', 'b', 'list'], ['daemon'], ['trust', 'token'], ['remote', 'list'], ['schedule', 'run', 'p1', 'h'], ['backup', 'list', 'p1']]) assert.equal(usesRemoteBundle(argv(...a)), true, a.join(' '));
  assert.equal(usesRemoteBundle(argv('prune', 'p1')), false);
  assert.equal(runKeyOf(argv('schedule', 'add', 'p1', 'h')), 'schedule-add');
  assert.equal(runKeyOf(argv('schedule')), 'schedule-list');
  assert.equal(runKeyOf(argv('backup', 'restore', 'p1', 's')), 'backup-restore');
  assert.equal(runKeyOf(argv('snapshot', 'protect', 'p1', 's')), 'snapshot-protect');
});
