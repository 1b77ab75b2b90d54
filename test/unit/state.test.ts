import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { readJsonIfExists, writeJsonAtomic } from '../../lib/atomic-file';
import { BusyError, cleanupFailuresOf, describeError } from '../../lib/errors';
import { withLock } from '../../lib/lock';
import { ContainerPaths } from '../../runtime/paths';
import { processStartTime } from '../../lib/proc';
import { observeState, writeState } from '../../runtime/state';
import { UndoStack, withUndo } from '../../lib/undo';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-state-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('atomic writes leave no temp files and replace whole', async () => {
  const file = path.join(dir, 'a.json');
  await writeJsonAtomic(file, { n: 1 });
  await writeJsonAtomic(file, { n: 2 });
  assert.deepEqual(readJsonIfExists(file), { n: 2 });
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('tmp')), []);
  assert.equal(readJsonIfExists(path.join(dir, 'missing.json')), undefined);
});

test('a reused pid is never mistaken for init: start time must match', async () => {
  const paths = new ContainerPaths(fs.mkdtempSync(path.join(dir, 'c-')));
  const me = process.pid;
  await writeState(paths, { status: 'running', initPid: me, initStartTime: processStartTime(me) });
  assert.equal(observeState(paths).status, 'running');
  await writeState(paths, { status: 'running', initPid: me, initStartTime: (processStartTime(me) ?? 0) + 1 });
  assert.equal(observeState(paths).status, 'stopped');
});

test('a dead init reads as stopped with the exit status the monitor recorded', async () => {
  const paths = new ContainerPaths(fs.mkdtempSync(path.join(dir, 'c-')));
  await writeState(paths, { status: 'running', initPid: 999999, initStartTime: 1, startedAt: 'x' });
  fs.writeFileSync(paths.exitFile, JSON.stringify({ pid: 999999, signal: 9, finishedAt: 0 }));
  const s = observeState(paths);
  assert.equal(s.status, 'stopped');
  assert.equal(s.exit?.signal, 'SIGKILL');
});

test('the lock excludes a second holder, which fails with "busy"', async () => {
  const lockFile = path.join(dir, 'c.lock');
  // Another process holds the lock for a while.
  const holder = spawn(process.execPath, ['-e', `
    const { withLock } = require(${JSON.stringify(path.resolve(__dirname, '../../lib/lock.js'))});
    withLock(${JSON.stringify(lockFile)}, 'c', 1000, async () => { process.stdout.write('held\\n'); await new Promise((r) => setTimeout(r, 1500)); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
  await assert.rejects(withLock(lockFile, 'container c', 100, async () => 1), BusyError);
  await new Promise((res) => holder.on('exit', res));
  assert.equal(await withLock(lockFile, 'container c', 100, async () => 42), 42);
});

test('a lock held by a SIGKILLed process is free again', async () => {
  const lockFile = path.join(dir, 'd.lock');
  const holder = spawn(process.execPath, ['-e', `
    const { withLock } = require(${JSON.stringify(path.resolve(__dirname, '../../lib/lock.js'))});
    withLock(${JSON.stringify(lockFile)}, 'd', 1000, async () => { process.stdout.write('held\\n'); await new Promise(() => setInterval(() => {}, 1000)); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
  holder.kill('SIGKILL');
  await new Promise((res) => holder.on('exit', res));
  assert.equal(await withLock(lockFile, 'container d', 500, async () => 'ok'), 'ok');
});

test('undo steps run in reverse on failure and never hide the error', async () => {
  const order: string[] = [];
  await assert.rejects(
    withUndo(async (undo) => {
      undo.add('one', () => { order.push('one'); });
      undo.add('two', () => { order.push('two'); throw new Error('undo broke'); });
      throw new Error('boom');
    }),
    (err: Error) => {
      assert.equal(err.message, 'boom');
      assert.deepEqual(cleanupFailuresOf(err), ['two: undo broke']);
      assert.match(describeError(err), /boom.*cleanup also failed: two: undo broke/);
      return true;
    },
  );
  assert.deepEqual(order, ['two', 'one']);
  const u = new UndoStack();
  u.add('x', () => { order.push('x'); });
  u.commit();
  assert.deepEqual(await u.unwind(), []);
  assert.ok(!order.includes('x'));
});
