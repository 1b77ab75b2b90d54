import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../lib/errors';
import { validateName } from '../../lib/names';

test('valid names pass', () => {
  for (const n of ['p1', 'web-01', 'a.b_c', 'X', 'x'.repeat(64)]) assert.equal(validateName(n), n);
});

test('bad names are refused with a one-line message', () => {
  const bad = ['', 'a/b', '..', 'a..b', '.hidden', 'nul\0byte', 'new\nline', '-dash', 'x'.repeat(65), 'start', 'destroy', 'white space', 'ünï'];
  for (const n of bad) {
    assert.throws(() => validateName(n), (err: Error) => err instanceof InvalidArgumentError && !err.message.includes('\n'), JSON.stringify(n));
  }
});

test('each refusal says what is wrong with the name', () => {
  const why = (n: string) => { try { validateName(n); return ''; } catch (err) { return (err as Error).message; } };
  assert.equal(why('.'), 'container name "." is not a name');
  assert.match(why('..'), /contains "\.\."/);
  assert.match(why('a..b'), /contains "\.\."/);
  assert.match(why('.hidden'), /is invalid/);
});
