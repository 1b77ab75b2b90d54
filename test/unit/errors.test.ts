import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  addCleanupFailures, BusyError, codeOf, CorruptDataError, describeError, ERROR_CODES, GRPC_STATUS, InvalidArgumentError, isErrorCode, TsvzError,
} from '../../lib/errors';

const REPO = path.resolve(__dirname, '..', '..', '..');

test('every code has an exit status and a gRPC status', () => {
  for (const [code, { exit, grpc }] of Object.entries(ERROR_CODES)) {
    assert.ok(Number.isInteger(exit) && exit > 0 && exit < 256, code);
    assert.ok(grpc in GRPC_STATUS, `${code}: ${grpc}`);
  }
  assert.equal(new BusyError('x').exitCode, 75, 'busy is "try again" to a script');
  assert.equal(new BusyError('x').grpcStatus, 'ABORTED');
  assert.equal(new CorruptDataError('x').grpcStatus, 'DATA_LOSS');
  assert.equal(new InvalidArgumentError('x').exitCode, 1);
  assert.ok(isErrorCode('ENOENT') && !isErrorCode('ENOPE') && !isErrorCode('toString'));
  assert.equal(codeOf(new Error('plain')), 'EINTERNAL');
});

test('the table in docs/architecture.md is the table in the code', () => {
  const doc = fs.readFileSync(path.join(REPO, 'docs', 'architecture.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| `(E[A-Z]+)` \| [^|]+ \| (\d+) \| ([A-Z_]+) \|$/gm)].map((m) => [m[1], Number(m[2]), m[3]]);
  const code = Object.entries(ERROR_CODES).map(([c, { exit, grpc }]) => [c, exit, grpc]);
  assert.deepEqual(rows.sort(), code.sort());
});

test('failed cleanups are a field of the error, shown after its message', () => {
  const err = new TsvzError('ESTATE', 'container p1 is running', { hint: 'stop it first' });
  addCleanupFailures(err, ['thaw: timed out']);
  assert.equal(err.message, 'container p1 is running');
  assert.deepEqual(err.cleanupFailures, ['thaw: timed out']);
  assert.equal(describeError(err), 'container p1 is running (stop it first) (cleanup also failed: thaw: timed out)');
});
