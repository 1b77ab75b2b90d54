import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Sha256 } from '../../archive/digest';
import { completeWithPages, PageStreams, streamDigest } from '../../migrate/page-stream';

const one = (final?: { bytes: number; sha256: string }): PageStreams => ({ rounds: [], final });

/** Stop-and-copy's memory: the page server's images join the checkpoint only if the stream is the one the manifest names. */
function dirs(): { staging: string; images: string; done: () => void } {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-page-stream-'));
  const staging = path.join(base, 'staging');
  const images = path.join(base, 'images');
  fs.mkdirSync(staging);
  fs.mkdirSync(images);
  fs.writeFileSync(path.join(staging, 'pagemap-1.img'), 'map');
  fs.writeFileSync(path.join(staging, 'pages-1.img'), 'pages');
  fs.writeFileSync(path.join(staging, 'stats-dump'), 'not an image of the checkpoint');
  fs.writeFileSync(path.join(images, 'core-1.img'), 'core');
  return { staging, images, done: () => fs.rmSync(base, { recursive: true, force: true }) };
}

function digestOf(data: string): { bytes: number; sha256: string } {
  const sha = new Sha256();
  sha.update(Buffer.from(data));
  return streamDigest(sha);
}

test('the page images move into the checkpoint when bytes and sha256 match; nothing else does', () => {
  const d = dirs();
  try {
    const sent = digestOf('the stream');
    assert.equal(completeWithPages(d.staging, d.images, one(sent), one({ ...sent }), 'the checkpoint'), 2);
    assert.deepEqual(fs.readdirSync(d.images).sort(), ['core-1.img', 'pagemap-1.img', 'pages-1.img']);
    assert.deepEqual(fs.readdirSync(d.staging), ['stats-dump']);
  } finally {
    d.done();
  }
});

test('a truncated, padded or altered stream is refused, and no image moves', () => {
  const d = dirs();
  try {
    const sent = digestOf('the stream');
    const cases: [{ bytes: number; sha256: string } | undefined, RegExp][] = [
      [{ ...sent, bytes: sent.bytes - 1 }, /is truncated or padded: 9 bytes came, the source sent 10/],
      [{ ...sent, bytes: sent.bytes + 1 }, /is truncated or padded/],
      [digestOf('the strean'), /is not what the source sent \(its sha256 differs\)/],
      [undefined, /names memory sent to this host's page server, and none came/],
    ];
    for (const [got, message] of cases) {
      assert.throws(() => completeWithPages(d.staging, d.images, one(sent), one(got), 'the checkpoint'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ECORRUPT');
        assert.match(err.message, message);
        return true;
      });
    }
    assert.throws(() => completeWithPages(d.staging, d.images, one(), one(sent), 'the checkpoint'), /names no page stream, and one came/);
    assert.deepEqual(fs.readdirSync(d.images), ['core-1.img']);
  } finally {
    d.done();
  }
});

test('an archive carrying a page image of its own is refused; a stream that left no images is too; neither side naming one is a no-op', () => {
  const d = dirs();
  try {
    const sent = digestOf('the stream');
    fs.writeFileSync(path.join(d.images, 'pages-1.img'), 'from the archive');
    assert.throws(() => completeWithPages(d.staging, d.images, one(sent), one(sent), 'the checkpoint'), /carries pages-1\.img, which its page stream wrote too/);
    assert.equal(fs.readFileSync(path.join(d.images, 'pages-1.img'), 'utf8'), 'from the archive');
    for (const f of fs.readdirSync(d.staging)) fs.rmSync(path.join(d.staging, f));
    fs.writeFileSync(path.join(d.staging, 'pages-x.img'), 'no image name');
    assert.throws(() => completeWithPages(d.staging, d.images, one(sent), one(sent), 'the checkpoint'), /left no page images/);
    assert.equal(completeWithPages(d.staging, d.images, one(), one(), 'the checkpoint'), 0);
  } finally {
    d.done();
  }
});

/** Pre-copy: rounds in pre-1, pre-2, ... of the staging directory, each linked to the one before, as CRIU's page servers left them. */
function rounds(d: { staging: string }, n: number): void {
  for (let i = 1; i <= n; i++) {
    const dir = path.join(d.staging, `pre-${i}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'pagemap-1.img'), `map ${i}`);
    fs.writeFileSync(path.join(dir, 'pages-1.img'), `pages ${i}`);
    if (i > 1) fs.symlinkSync(`../pre-${i - 1}`, path.join(dir, 'parent'));
  }
  fs.symlinkSync(`pre-${n}`, path.join(d.staging, 'parent'));
}

test("pre-copy: every round's stream must match, in order; then the rounds move under the checkpoint, which links to the last", () => {
  const d = dirs();
  try {
    rounds(d, 2);
    const sent: PageStreams = { rounds: [digestOf('round 1'), digestOf('round 2')], final: digestOf('the stream') };
    const cases: [PageStreams, RegExp][] = [
      [{ ...sent, rounds: [sent.rounds[0]] }, /names 2 pre-copy rounds, and 1 came/],
      [{ ...sent, rounds: [sent.rounds[1], sent.rounds[0]] }, /round 1 of the memory of the checkpoint is truncated or padded|round 1 .* sha256 differs/],
      [{ ...sent, rounds: [sent.rounds[0], digestOf('round 3')] }, /round 2 of the memory of the checkpoint is not what the source sent/],
    ];
    for (const [got, message] of cases) assert.throws(() => completeWithPages(d.staging, d.images, sent, got, 'the checkpoint'), message);
    assert.deepEqual(fs.readdirSync(d.images), ['core-1.img']);
    assert.equal(completeWithPages(d.staging, d.images, sent, { rounds: [...sent.rounds], final: sent.final }, 'the checkpoint'), 6);
    assert.deepEqual(fs.readdirSync(d.images).sort(), ['core-1.img', 'pagemap-1.img', 'pages-1.img', 'parent', 'pre-1', 'pre-2']);
    assert.equal(fs.readFileSync(path.join(d.images, 'parent', 'pages-1.img'), 'utf8'), 'pages 2');
    assert.equal(fs.readFileSync(path.join(d.images, 'parent', 'parent', 'pages-1.img'), 'utf8'), 'pages 1');
  } finally {
    d.done();
  }
});

test('pre-copy: a round whose images do not lead to the round before, or an archive bringing a round of its own, is refused', () => {
  const d = dirs();
  try {
    rounds(d, 2);
    const sent: PageStreams = { rounds: [digestOf('round 1'), digestOf('round 2')], final: digestOf('the stream') };
    fs.rmSync(path.join(d.staging, 'pre-2', 'parent'));
    fs.symlinkSync('/etc', path.join(d.staging, 'pre-2', 'parent'));
    assert.throws(() => completeWithPages(d.staging, d.images, sent, sent, 'the checkpoint'), /round 2 of the checkpoint do not lead to the round before \(\/etc\)/);
    fs.rmSync(path.join(d.staging, 'pre-2', 'parent'));
    fs.symlinkSync('../pre-1', path.join(d.staging, 'pre-2', 'parent'));
    fs.mkdirSync(path.join(d.images, 'pre-1'));
    assert.throws(() => completeWithPages(d.staging, d.images, sent, sent, 'the checkpoint'), /carries pre-1, which its page stream wrote too/);
    assert.deepEqual(fs.readdirSync(d.images).sort(), ['core-1.img', 'pre-1']);
  } finally {
    d.done();
  }
});
