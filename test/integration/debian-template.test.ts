import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped debian template tests: ${skip}`);

describe('debian template (debootstrap minbase from the host mirror)', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  test('builds once, is cached, and boots', () => {
    t.ok(['create', 'deb1', '--template', 'debian'], { timeoutMs: 600_000 }); // debootstrap: ~40 s here, more on a slow mirror
    assert.ok(fs.existsSync(path.join(t.dir, 'cache', 'debian-bookworm', 'etc', 'debian_version')));
    const started = Date.now();
    t.ok(['create', 'deb2', '--template', 'debian']);
    assert.ok(Date.now() - started < 20_000, 'the second create copies the cached tree');
    t.ok(['start', 'deb1']);
    assert.match(t.ok(['exec', 'deb1', '--', 'cat', '/etc/debian_version']), /^12\./);
    assert.match(t.ok(['exec', 'deb1', '--', 'hostname']), /^deb1$/m);
    assert.equal(t.ok(['exec', 'deb1', '--', 'cat', '/proc/1/comm']).trim(), 'init');
    t.ok(['stop', 'deb1', '--timeout', '5']);
  });
});
