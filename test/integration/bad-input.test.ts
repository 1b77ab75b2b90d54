import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { leftoverCgroups, rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped bad-input tests: ${skip}`);

/** One clear line on stderr, a non-zero exit, no stack trace. */
function assertCleanFailure(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.status, 0);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
  assert.match(lines[0], /^tsvz: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

describe('bad input: one clear line, non-zero exit, nothing created', { skip }, () => {
  const t = new TestRoot();
  const containers = () => fs.readdirSync(path.join(t.dir, 'containers')).filter((e) => e !== 'ok1');
  before(() => {
    t.ok(['create', 'ok1']);
  });
  after(() => t.cleanup());

  const badNames: [string, RegExp][] = [
    ['a/b', /invalid/],
    ['..', /\.\./],
    ['a..b', /\.\./],
    ['new\nline', /invalid/],
    ['x'.repeat(65), /longer than 64/],
    ['start', /subcommand/],
    ['list', /subcommand/],
  ];
  for (const [name, pattern] of badNames) {
    test(`name ${JSON.stringify(name)}`, () => {
      assertCleanFailure(t.run(['create', name]), pattern);
      assert.deepEqual(containers(), []);
    });
  }

  test('a name with a leading "-"', () => {
    assertCleanFailure(t.run(['create', '--', '-dash']), /starts with "-"/);
    assert.notEqual(t.run(['create', '-dash']).status, 0);
    assert.deepEqual(containers(), []);
  });

  test('creating a name that exists', () => {
    assertCleanFailure(t.run(['create', 'ok1']), /already exists/);
  });

  test('unknown template', () => {
    assertCleanFailure(t.run(['create', 'x1', '--template', 'gentoo']), /unknown template/);
    assert.deepEqual(containers(), []);
  });

  test('an unreadable tarball', () => {
    const junk = path.join(t.dir, 'junk.tar');
    fs.writeFileSync(junk, 'this is not a tar archive at all'.repeat(40));
    assertCleanFailure(t.run(['create', 'x2', '--template', `tar:${junk}`]), /tarball/);
    assertCleanFailure(t.run(['create', 'x3', '--template', `tar:${path.join(t.dir, 'missing.tar')}`]), /does not exist/);
    assert.deepEqual(containers(), []);
  });

  test('a malicious tarball (path traversal)', async () => {
    const tarStream = await import('tar-stream');
    const pack = tarStream.pack();
    pack.entry({ name: 'etc/ok' }, 'fine');
    pack.entry({ name: '../../escape' }, 'evil');
    pack.finalize();
    const file = path.join(t.dir, 'evil.tar');
    const chunks: Buffer[] = [];
    for await (const c of pack) chunks.push(c as Buffer);
    fs.writeFileSync(file, Buffer.concat(chunks));
    assertCleanFailure(t.run(['create', 'x4', '--template', `tar:${file}`]), /escapes the root/);
    assert.equal(fs.existsSync(path.join(t.dir, 'escape')), false);
    assert.equal(fs.existsSync(path.join(t.dir, 'containers', 'escape')), false);
    assert.deepEqual(containers(), []);
  });

  test('bad sizes and limits', () => {
    assertCleanFailure(t.run(['create', 'x5', '--memory', '12Q']), /invalid --memory "12Q"/);
    assertCleanFailure(t.run(['create', 'x5', '--memory', '0']), /greater than zero/);
    assertCleanFailure(t.run(['create', 'x5', '--cpus', 'lots']), /invalid --cpus/);
    assertCleanFailure(t.run(['create', 'x5', '--pids', '-3']), /invalid --pids|unknown option/);
    assertCleanFailure(t.run(['create', 'x5', '--net', 'bridge', '--ip', '198.18.0.300/15']), /198\.18\.0\.300/);
    assertCleanFailure(t.run(['create', 'x5', '--net', 'carrier-pigeon']), /unknown --net/);
    assert.deepEqual(containers(), []);
  });

  test('a --root that is a file', () => {
    const file = path.join(t.dir, 'a-file');
    fs.writeFileSync(file, '');
    const other = new TestRoot();
    try {
      const r = other.run(['--root', file, 'list']);
      assertCleanFailure(r, /not a directory/);
    } finally {
      other.cleanup();
    }
  });

  test('lifecycle verbs in the wrong state', () => {
    assertCleanFailure(t.run(['exec', 'ok1', '--', 'true']), /not running/);
    assertCleanFailure(t.run(['stop', 'ok1']), /not running/);
    assertCleanFailure(t.run(['kill', 'ok1']), /not running/);
    assertCleanFailure(t.run(['start', 'nope']), /no such container/);
    assertCleanFailure(t.run(['info', 'nope']), /no such container/);
    assertCleanFailure(t.run(['destroy', 'nope']), /no such container/);
    t.ok(['start', 'ok1']);
    try {
      assertCleanFailure(t.run(['start', 'ok1']), /already running/);
      assertCleanFailure(t.run(['destroy', 'ok1']), /is running/);
      assertCleanFailure(t.run(['kill', 'ok1', 'SIGNOPE']), /unknown signal/);
      assert.equal(t.info('ok1').state, 'running', 'refused operations changed nothing');
    } finally {
      t.ok(['stop', 'ok1', '--timeout', '3']);
    }
    assert.equal(leftoverCgroups(t.dir).length, 0);
  });
});
