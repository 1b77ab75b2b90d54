import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped template tests: ${skip}`);

describe('templates', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  test('tar:FILE with an --init other than /sbin/init', () => {
    // A rootfs tarball made from a busybox container, plus a tiny "server".
    t.ok(['create', 'src']);
    const rootfs = path.join(t.dir, 'containers', 'src', 'rootfs');
    fs.writeFileSync(path.join(rootfs, 'usr/bin/server'), '#!/bin/sh\necho "serving on port $2"\nexec sleep 1000\n', { mode: 0o755 });
    const tarball = path.join(t.dir, 'rootfs.tar');
    assert.equal(spawnSync('tar', ['-C', rootfs, '-cf', tarball, '.']).status, 0);

    t.ok(['create', 'app', '--template', `tar:${tarball}`, '--init', '/usr/bin/server --port 80']);
    t.ok(['start', 'app']);
    assert.deepEqual(t.info('app').config.init, ['/usr/bin/server', '--port', '80']);
    assert.match(t.ok(['exec', 'app', '--', 'cat', '/proc/1/cmdline']), /sleep\x001000/);
    assert.match(t.ok(['logs', 'app']), /serving on port 80/);
    // sleep ignores SIGTERM as pid 1: stop falls back to SIGKILL after the timeout
    const started = Date.now();
    t.ok(['stop', 'app', '--timeout', '1']);
    assert.ok(Date.now() - started >= 1000);
    assert.equal(t.info('app').exit.signal, 'SIGKILL');
  });

  test('an --init that does not exist fails start cleanly', () => {
    t.ok(['create', 'noinit', '--init', '/nope']);
    const r = t.run(['start', 'noinit']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /exec \/nope: No such file or directory/);
    assert.equal(t.info('noinit').state, 'created');
    t.ok(['destroy', 'noinit']);
  });
});
