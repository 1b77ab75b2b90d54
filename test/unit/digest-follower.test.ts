import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { followDigests } from '../../checkpoint/digest-follower';

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('digests taken while the files grow equal those of the finished files; other files are left alone', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-digests-'));
  try {
    const follow = followDigests(dir);
    const a = crypto.randomBytes(9 << 20);
    const b = crypto.randomBytes(3 << 20);
    const fa = fs.openSync(path.join(dir, 'pages-1.img'), 'w');
    // Written in pieces, with pauses for the follower to read part of it on the way.
    for (let at = 0; at < a.length; at += 1 << 20) {
      fs.writeSync(fa, a, at, 1 << 20);
      await pause(15);
    }
    fs.closeSync(fa);
    fs.writeFileSync(path.join(dir, 'pages-12.img'), b); // one that comes late, whole
    fs.writeFileSync(path.join(dir, 'core-1.img'), 'not memory');
    const got = await follow.finish();
    assert.deepEqual([...got.keys()].sort(), ['pages-1.img', 'pages-12.img']);
    assert.deepEqual(got.get('pages-1.img'), { size: a.length, sha256: sha(a) });
    assert.deepEqual(got.get('pages-12.img'), { size: b.length, sha256: sha(b) });
    await follow.stop(); // after finish: nothing left to close twice
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('stopped without finishing (a failed dump), it lets go of the files', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-digests-'));
  try {
    fs.writeFileSync(path.join(dir, 'pages-1.img'), crypto.randomBytes(1 << 20));
    const follow = followDigests(dir);
    await pause(50);
    await follow.stop();
    const fds = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { return ''; } });
    assert.ok(!fds.some((l) => l.startsWith(dir)), 'no descriptor of the images left open');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
