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

  test('builds once (two creates at once share the build), is cached, and boots', async () => {
    // debootstrap: ~40 s here, more on a slow mirror. The second create waits for the first one's build.
    const creates = ['deb1', 'deb0'].map((name) => {
      const p = t.spawn(['create', name, '--template', 'debian']);
      let err = '';
      p.stderr!.on('data', (d) => { err += d; });
      return new Promise<string>((resolve) => p.on('exit', (code) => resolve(`${code} ${err}`)));
    });
    assert.deepEqual(await Promise.all(creates), ['0 ', '0 ']);
    assert.ok(fs.existsSync(path.join(t.dir, 'cache', 'debian-bookworm', 'etc', 'debian_version')));
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'cache')).filter((e) => e.includes('.building-')), [], 'no build left over');
    t.ok(['destroy', 'deb0']);
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
