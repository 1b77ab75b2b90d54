import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, parseCpus, parsePositiveInt, parseSize } from '../../lib/units';
import { splitCommandLine } from '../../lib/shell-words';
import { lastLines } from '../../ops/logs';
import { parseSignal } from '../../ops/kill';

test('parseSize understands binary suffixes', () => {
  assert.equal(parseSize('512M'), 512 * 1024 ** 2);
  assert.equal(parseSize('1G'), 1024 ** 3);
  assert.equal(parseSize('1.5k'), 1536);
  assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseSize('4096'), 4096);
  for (const bad of ['12Q', '', 'M', '-1M', '0', '1 2M']) assert.throws(() => parseSize(bad), /invalid|greater than zero/, bad);
});

test('cpus and positive integers', () => {
  assert.equal(parseCpus('0.5'), 0.5);
  assert.throws(() => parseCpus('0'));
  assert.throws(() => parseCpus('many'));
  assert.equal(parsePositiveInt('512', '--pids'), 512);
  assert.throws(() => parsePositiveInt('1.5', '--pids'));
  assert.equal(formatBytes(1536), '1.5 KiB');
});

test('splitCommandLine splits like a shell, without expansions', () => {
  assert.deepEqual(splitCommandLine('/usr/bin/server --port 80'), ['/usr/bin/server', '--port', '80']);
  assert.deepEqual(splitCommandLine(`sh -c "echo 'hi there'; exit 3"`), ['sh', '-c', "echo 'hi there'; exit 3"]);
  assert.deepEqual(splitCommandLine(`a\\ b 'c d' "e\\"f"`), ['a b', 'c d', 'e"f']);
  assert.deepEqual(splitCommandLine('  '), []);
  assert.throws(() => splitCommandLine('"open'), /unterminated/);
});

test('lastLines keeps the last N lines', () => {
  assert.equal(lastLines('a\nb\nc\n', 2), 'b\nc\n');
  assert.equal(lastLines('a\nb\nc', 1), 'c');
  assert.equal(lastLines('a\n', 5), 'a\n');
  assert.equal(lastLines('a\nb\n', 0), '');
});

test('parseSignal accepts names and numbers', () => {
  assert.equal(parseSignal('SIGKILL'), 9);
  assert.equal(parseSignal('term'), 15);
  assert.equal(parseSignal('10'), 10);
  assert.throws(() => parseSignal('SIGNOPE'), /unknown signal/);
  assert.throws(() => parseSignal('99'), /unknown signal/);
});
