import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { CriuClient } from '../../checkpoint/criu/client';
import { CriuError } from '../../checkpoint/criu/errors';

describe('a CRIU that never answers', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-criu-timeout-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Reads nothing, answers nothing, stays: a wedged `criu swrk`.
  const fake = path.join(dir, 'criu');
  fs.writeFileSync(fake, '#!/bin/sh\nexec sleep 600\n', { mode: 0o755 });

  it('is killed at the time limit, and the call fails saying so', async () => {
    const started = Date.now();
    await assert.rejects(new CriuClient(fake, 300).version(), (err: unknown) => {
      assert.ok(err instanceof CriuError, String(err));
      assert.match(err.message, /no answer within 0\.3 s and was killed/);
      return true;
    });
    assert.ok(Date.now() - started < 5000, 'not waiting for it on its own');
    const left = spawnSync('pgrep', ['-f', `^sleep 600$`], { encoding: 'utf8' }).stdout.trim();
    for (const pid of left.split('\n').filter(Boolean)) {
      // Another test's sleep would be another parent's child: ours is gone.
      assert.notEqual(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[3], String(process.pid), 'the fake CRIU was killed');
    }
  });
});
