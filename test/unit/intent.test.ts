import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { pendingIntents, recoverIntents, RecoveryHandlers, withIntent } from '../../lib/intent';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-intent-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Handlers that log what they are asked to do. */
function logging(log: string[]): RecoveryHandlers {
  return {
    undo: { remove: async (step) => { log.push(`remove ${String(step.path)}`); fs.rmSync(String(step.path), { recursive: true, force: true }); } },
    finish: { op: async (record) => { log.push(`finish ${String(record.data.id)}`); } },
  };
}

test('success leaves no journal; a failure undoes its steps in reverse and leaves none', async () => {
  const j = path.join(dir, 'a');
  const log: string[] = [];
  await withIntent(j, 'op', { id: 1 }, logging(log), async (intent) => {
    await intent.will({ kind: 'remove', path: path.join(dir, 'a-made') });
    fs.mkdirSync(path.join(dir, 'a-made'));
  });
  assert.deepEqual(pendingIntents(j), []);
  assert.deepEqual(log, []);
  await assert.rejects(withIntent(j, 'op', { id: 2 }, logging(log), async (intent) => {
    for (const n of ['one', 'two']) {
      await intent.will({ kind: 'remove', path: path.join(dir, n) });
      fs.mkdirSync(path.join(dir, n));
    }
    throw new Error('boom');
  }), /boom/);
  assert.deepEqual(log, [`remove ${path.join(dir, 'two')}`, `remove ${path.join(dir, 'one')}`]);
  assert.deepEqual(pendingIntents(j), []);
  assert.ok(!fs.existsSync(path.join(dir, 'one')));
});

test('past its point of no return a failure finishes instead of undoing', async () => {
  const j = path.join(dir, 'b');
  const log: string[] = [];
  await assert.rejects(withIntent(j, 'op', { id: 3 }, logging(log), async (intent) => {
    await intent.will({ kind: 'remove', path: path.join(dir, 'kept') });
    fs.mkdirSync(path.join(dir, 'kept'));
    intent.reach('written');
    throw new Error('after the point');
  }));
  assert.deepEqual(log, ['finish 3']);
  assert.ok(fs.existsSync(path.join(dir, 'kept')));
});

/** A process that starts a journal, takes steps, and is SIGKILLed before it ends. */
async function killedWriter(j: string, reach: boolean): Promise<void> {
  const intentJs = path.resolve(__dirname, '../../lib/intent.js');
  const made = path.join(dir, `made-${reach}`);
  const child = spawn(process.execPath, ['-e', `
    const { withIntent } = require(${JSON.stringify(intentJs)});
    const fs = require('fs');
    withIntent(${JSON.stringify(j)}, 'op', { id: 'k' }, { undo: {} }, async (intent) => {
      await intent.will({ kind: 'remove', path: ${JSON.stringify(made)} });
      fs.mkdirSync(${JSON.stringify(made)}, { recursive: true });
      ${reach ? "intent.reach('done-enough');" : ''}
      process.stdout.write('ready\\n');
      await new Promise(() => setInterval(() => {}, 1000));
    });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout!.once('data', () => res()));
  child.kill('SIGKILL');
  await new Promise((res) => child.on('exit', res));
}

test('a killed writer leaves its journal: the next holder undoes it, or finishes it past the point', async () => {
  const j = path.join(dir, 'c');
  await killedWriter(j, false);
  assert.equal(pendingIntents(j).length, 1);
  const log: string[] = [];
  assert.deepEqual(await recoverIntents(j, logging(log)), ['undid an interrupted op']);
  assert.deepEqual(log, [`remove ${path.join(dir, 'made-false')}`]);
  assert.ok(!fs.existsSync(path.join(dir, 'made-false')));
  assert.deepEqual(pendingIntents(j), []);

  await killedWriter(j, true);
  log.length = 0;
  assert.deepEqual(await recoverIntents(j, logging(log)), ['finished an interrupted op']);
  assert.deepEqual(log, ['finish k']);
  assert.ok(fs.existsSync(path.join(dir, 'made-true')), 'finished, not undone');
});

test('a journal of a live writer is left alone; an undo that fails keeps the journal and says why', async () => {
  const j = path.join(dir, 'd');
  let seen: string[] | undefined;
  await withIntent(j, 'op', {}, { undo: {} }, async () => {
    seen = await recoverIntents(j, { undo: {} }); // this process's own, still running
  });
  assert.deepEqual(seen, []);
  await killedWriter(j, false);
  await assert.rejects(recoverIntents(j, { undo: { remove: async () => { throw new Error('device busy'); } } }), /cannot recover .*op: remove: device busy/);
  assert.equal(pendingIntents(j).length, 1, 'kept for the next try');
  await recoverIntents(j, logging([]));
  assert.deepEqual(pendingIntents(j), []);
});
