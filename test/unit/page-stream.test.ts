import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Sha256 } from '../../archive/digest';
import { completeWithPages, streamDigest } from '../../migrate/page-stream';

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
    assert.equal(completeWithPages(d.staging, d.images, sent, { ...sent }, 'the checkpoint'), 2);
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
      assert.throws(() => completeWithPages(d.staging, d.images, sent, got, 'the checkpoint'), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ECORRUPT');
        assert.match(err.message, message);
        return true;
      });
    }
    assert.throws(() => completeWithPages(d.staging, d.images, undefined, sent, 'the checkpoint'), /names no page stream, and one came/);
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
    assert.throws(() => completeWithPages(d.staging, d.images, sent, sent, 'the checkpoint'), /carries pages-1\.img, which its page stream wrote too/);
    assert.equal(fs.readFileSync(path.join(d.images, 'pages-1.img'), 'utf8'), 'from the archive');
    for (const f of fs.readdirSync(d.staging)) fs.rmSync(path.join(d.staging, f));
    fs.writeFileSync(path.join(d.staging, 'pages-x.img'), 'no image name');
    assert.throws(() => completeWithPages(d.staging, d.images, sent, sent, 'the checkpoint'), /left no page images/);
    assert.equal(completeWithPages(d.staging, d.images, undefined, undefined, 'the checkpoint'), 0);
  } finally {
    d.done();
  }
});
