import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import { compressionOfName, compressor, decompressed, decompressedFile, detectCompression, sniff, writeCompressed } from '../../archive/compress';
import { hashFile, Sha256, Sha256Stream, sha256 } from '../../archive/digest';
import { ManifestCheck, parseFileList } from '../../archive/manifest';
import type { Voice } from '../../archive/refusal';
import { readTar } from '../../archive/tar-reader';
import { TarWriter } from '../../archive/tar-writer';
import { archiveVoice, checkpointManifest, packCheckpoint, receiveCheckpoint } from '../../checkpoint/archive';
import type { CheckpointMeta } from '../../checkpoint/catalog';
import type { ContainerConfig } from '../../runtime/config';
import { ErrorCode, TsvzError } from '../../lib/errors';

/** The archive stack's streams: checksums on the way, compression stages, backpressure, and a checkpoint through a pipe. */

const hasZstd = spawnSync('zstd', ['--version']).status === 0;
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-streams-'));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let seq = 0;
const fresh = (label: string) => {
  const dir = path.join(base, `${label}-${++seq}`);
  fs.mkdirSync(dir);
  return dir;
};
const voice: Voice = { subject: 'test stream', entries: 'test', origin: 'peer' };
const MIB = 1024 * 1024;

async function refusedWith(code: ErrorCode, pattern: RegExp, run: Promise<unknown>): Promise<void> {
  await assert.rejects(run, (err: unknown) => {
    assert.ok(err instanceof TsvzError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

/** `count` chunks of pseudo-random (and so incompressible) data, made only as they are read; `made()` says how far. */
function generated(count: number, size = 64 * 1024): { source: AsyncGenerator<Buffer>; made: () => number; sha256: string } {
  let made = 0;
  const seed = crypto.randomBytes(size);
  const all = crypto.createHash('sha256');
  for (let i = 0; i < count; i++) all.update(chunkOf(seed, i));
  async function* source(): AsyncGenerator<Buffer> {
    for (let i = 0; i < count; i++) {
      made += size;
      yield chunkOf(seed, i);
    }
  }
  return { source: source(), made: () => made, sha256: all.digest('hex') };
}

function chunkOf(seed: Buffer, i: number): Buffer {
  const c = Buffer.from(seed);
  c.writeUInt32LE(i, 0);
  return c;
}

/** Read a tar stream's entries: name -> sha256 of the data. */
async function digests(input: Readable): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of readTar(input, { voice, absoluteNames: 'refuse' })) {
    const sha = new Sha256();
    for await (const c of e.chunks()) sha.update(c);
    out.set(e.name, sha.digest());
  }
  return out;
}

describe('checksums while streaming', () => {
  test('Sha256Stream and Sha256.through hash what passes, unchanged', async () => {
    const data = crypto.randomBytes(300 * 1024);
    const hashing = new Sha256Stream();
    const seen: Buffer[] = [];
    await pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), hashing, new Writable({ write(c: Buffer, _e, cb) { seen.push(c); cb(); } }));
    assert.equal(hashing.sha256.digest(), sha256(data));
    assert.equal(hashing.sha256.size, data.length);
    assert.deepEqual(Buffer.concat(seen), data);
    const sha = new Sha256();
    const back: Buffer[] = [];
    for await (const c of sha.through(Readable.from([data]))) back.push(c);
    assert.deepEqual([sha.digest(), Buffer.concat(back).length], [sha256(data), data.length]);
    const file = path.join(fresh('hash'), 'f');
    fs.writeFileSync(file, data);
    assert.deepEqual(await hashFile(file), { size: data.length, sha256: sha256(data) });
  });
});

describe('compression stages', () => {
  test('names and magic bytes', () => {
    assert.equal(compressionOfName('cp.tar.zst'), 'zstd');
    assert.equal(compressionOfName('rootfs.tgz'), 'gzip');
    assert.equal(compressionOfName('cp.tar'), 'none');
    assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
    assert.equal(detectCompression(Buffer.from([0x1f, 0x8b])), 'gzip');
    assert.equal(detectCompression(Buffer.from('ustar')), 'none');
  });

  test('sniff puts the head back: the stream reads whole, from a pipe too', async () => {
    const pipe = new PassThrough();
    pipe.write('ab');
    setTimeout(() => pipe.end('cdef'), 10);
    const { head, stream } = await sniff(pipe, 4);
    assert.equal(head.toString(), 'abcd');
    const all: Buffer[] = [];
    for await (const c of stream) all.push(c as Buffer);
    assert.equal(Buffer.concat(all).toString(), 'abcdef');
    const short = await sniff(Readable.from([Buffer.from('x')]), 4);
    assert.equal(short.head.toString(), 'x');
    const rest: Buffer[] = [];
    for await (const c of short.stream) rest.push(c as Buffer);
    assert.equal(Buffer.concat(rest).toString(), 'x');
  });

  for (const format of ['gzip', 'zstd'] as const) {
    test(`a tar stream through ${format} and back: pipe into any Writable, read from any Readable`, { skip: format === 'zstd' && !hasZstd ? 'no zstd' : undefined }, async () => {
      const big = generated(40); // 2.5 MiB, incompressible
      const writer = new TarWriter();
      const wire = new PassThrough(); // stands in for a socket to another host
      const sent = pipeline(writer.readable, compressor(format), wire);
      const added = (async () => {
        await writer.add({ name: 'small', mode: 0o644 }, Buffer.from('hello'));
        await writer.add({ name: 'big', size: 40 * 64 * 1024, mode: 0o644 }, big.source);
        await writer.add({ name: 'zeros', size: 8 * MIB, mode: 0o644 }, Readable.from(Array.from({ length: 128 }, () => Buffer.alloc(64 * 1024))));
        writer.finish();
      })();
      const { stream, compression } = await decompressed(wire);
      assert.equal(compression, format);
      const got = await digests(stream);
      await Promise.all([sent, added]);
      assert.deepEqual(got, new Map([['small', sha256(Buffer.from('hello'))], ['big', big.sha256], ['zeros', sha256(Buffer.alloc(8 * MIB))]]));
    });

    test(`${format} data cut short is truncated; garbage is corrupt (ECORRUPT)`, { skip: format === 'zstd' && !hasZstd ? 'no zstd' : undefined }, async () => {
      const writer = new TarWriter();
      const chunks: Buffer[] = [];
      const done = pipeline(writer.readable, compressor(format), new Writable({ write(c: Buffer, _e, cb) { chunks.push(c); cb(); } }));
      await writer.add({ name: 'f', size: 20 * 64 * 1024 }, generated(20).source);
      writer.finish();
      await done;
      const whole = Buffer.concat(chunks);
      const read = async (bytes: Buffer) => digests((await decompressed(Readable.from([bytes]))).stream);
      await refusedWith('ECORRUPT', /^test stream is truncated$/, read(whole.subarray(0, whole.length - 100)));
      const garbled = Buffer.concat([whole.subarray(0, 20), Buffer.alloc(4096, 0x55)]);
      await refusedWith('ECORRUPT', /^test stream is (truncated|not a valid (gzip|zstd) archive)/, read(garbled));
    });
  }
});

describe('compressed files', () => {
  for (const format of ['none', 'gzip', 'zstd'] as const) {
    test(`writeCompressed into a file and decompressedFile back (${format}), from a pipe too`, { skip: format === 'zstd' && !hasZstd ? 'no zstd' : undefined }, async () => {
      const dir = fresh('files');
      const file = path.join(dir, 'a.tar');
      const writer = new TarWriter();
      const body = generated(24);
      void (async () => {
        await writer.add({ name: 'f', size: 24 * 64 * 1024 }, body.source);
        writer.finish();
      })();
      const fh = await fs.promises.open(file, 'wx');
      await writeCompressed(writer.readable, fh, format);
      await fh.close();
      assert.equal(detectCompression(fs.readFileSync(file).subarray(0, 4)), format);
      const back = await decompressedFile(await fs.promises.open(file, 'r'));
      assert.equal(back.compression, format);
      assert.deepEqual(await digests(back.stream), new Map([['f', body.sha256]]));
      // A pipe cannot be handed to zstd as a file: it streams through us instead.
      const fifo = path.join(dir, 'fifo');
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
      const feeding = pipeline(fs.createReadStream(file), fs.createWriteStream(fifo));
      const piped = await decompressedFile(await fs.promises.open(fifo, 'r'));
      assert.deepEqual(await digests(piped.stream), new Map([['f', body.sha256]]));
      await feeding;
    });
  }
});

describe('backpressure', () => {
  test('the writer makes data only as fast as its reader reads', async () => {
    const body = generated(32 * 16); // 32 MiB
    const writer = new TarWriter();
    const added = writer.add({ name: 'big', size: 32 * MIB }, body.source).then(() => writer.finish());
    let read = 0;
    let worst = 0;
    for await (const c of writer.readable) {
      read += (c as Buffer).length;
      worst = Math.max(worst, body.made() - read);
      if (read < 4 * MIB) await new Promise((r) => setTimeout(r, 1)); // a slow reader first
    }
    await added;
    assert.ok(worst < 4 * MIB, `at most a few buffers ahead of the reader (${worst} bytes)`);
  });

  test('the reader pulls the input only as fast as entries are consumed', async () => {
    const body = generated(32 * 16);
    const writer = new TarWriter();
    const added = writer.add({ name: 'big', size: 32 * MIB }, body.source).then(() => writer.finish());
    let consumed = 0;
    let worst = 0;
    for await (const e of readTar(writer.readable, { voice, absoluteNames: 'refuse' })) {
      for await (const c of e.chunks()) {
        consumed += c.length;
        worst = Math.max(worst, body.made() - consumed);
        if (consumed < 4 * MIB) await new Promise((r) => setTimeout(r, 1));
      }
    }
    await added;
    assert.equal(consumed, 32 * MIB);
    assert.ok(worst < 4 * MIB, `at most a few buffers ahead of the consumer (${worst} bytes)`);
  });

  test('a body of another length than its header says fails the archive instead of corrupting it', async () => {
    for (const [size, pattern] of [[10, /grew while it was packed/], [1000, /shrank while it was packed/]] as const) {
      const writer = new TarWriter();
      const sink = (async () => { for await (const _ of writer.readable) { /* read */ } })();
      await assert.rejects(writer.add({ name: 'f', size }, Readable.from([Buffer.alloc(100)])), pattern);
      await assert.rejects(sink);
    }
  });
});

describe('manifests', () => {
  const rules = { pattern: /^[a-z]+$/, maxFiles: 3, maxBytes: 100 };
  const file = (p: string, size = 1) => ({ path: p, size, sha256: 'a'.repeat(64) });

  test('a file list is hostile input: shape, names and totals are checked', () => {
    assert.deepEqual(parseFileList([file('a'), file('b')], rules, 'bad'), [file('a'), file('b')]);
    const corrupt: [unknown, RegExp][] = [
      [{}, /no file list/],
      [[file('../x')], /bad file entry/],
      [[{ ...file('a'), size: -1 }], /bad size for a/],
      [[{ ...file('a'), size: 1.5 }], /bad size for a/],
      [[{ ...file('a'), sha256: 'xyz' }], /bad sha256 for a/],
      [[file('a'), file('a')], /a listed twice/],
      [[null], /bad file entry/],
    ];
    for (const [list, pattern] of corrupt) {
      assert.throws(() => parseFileList(list, rules, 'bad'), (err: TsvzError) => err.code === 'ECORRUPT' && pattern.test(err.message));
    }
    assert.throws(() => parseFileList([file('a'), file('b'), file('c'), file('d')], rules, 'bad'), (err: TsvzError) => err.code === 'ELIMIT' && /more than 3 files/.test(err.message));
    assert.throws(() => parseFileList([file('a', 60), file('b', 60)], rules, 'bad'), (err: TsvzError) => err.code === 'ELIMIT' && /more than 100 bytes/.test(err.message));
  });

  test('entries checked against the list: unlisted, twice, another size, missing', async () => {
    const writer = new TarWriter();
    void (async () => {
      await writer.add({ name: 'a' }, Buffer.from('x'));
      await writer.add({ name: 'a' }, Buffer.from('x'));
      await writer.add({ name: 'c' }, Buffer.from('x'));
      await writer.add({ name: 'b' }, Buffer.from('x'));
      writer.finish();
    })();
    const codes: string[] = [];
    const check = new ManifestCheck([file('a'), file('b', 2)], voice);
    for await (const e of readTar(writer.readable, { voice, absoluteNames: 'refuse' })) {
      try { check.expect(e); } catch (err) { codes.push(`${(err as TsvzError).code} ${(err as Error).message}`); }
    }
    assert.deepEqual(codes, [
      'ECORRUPT test entry "a" appears twice',
      'ECORRUPT test stream has an entry its manifest does not list: c',
      'ECORRUPT test stream has an entry of another size than its manifest lists: b',
    ]);
    assert.throws(() => check.complete(), (err: TsvzError) => err.code === 'ECORRUPT' && err.message === 'test stream is truncated: b is missing');
  });
});

describe('a checkpoint through a pipe', () => {
  const meta: CheckpointMeta = {
    id: 'cp1', container: 'p1', createdAt: '2026-01-01T00:00:00.000Z', criuVersion: '4.1.1', kernel: '6.1',
    leaveRunning: false, tcpEstablished: false, dumpMs: 12, sizeBytes: 0,
  };
  const config = {
    version: 1, name: 'p1', hostname: 'p1', template: 'busybox', init: ['/sbin/init'], stopSignal: 'SIGTERM',
    env: [], limits: {}, net: { mode: 'none' }, pool: 'default', createdAt: '2026-01-01T00:00:00.000Z',
  } as ContainerConfig;

  for (const format of ['none', 'zstd'] as const) {
    test(`packCheckpoint into a stream (${format}), receiveCheckpoint from it, verified on the way`, { skip: format === 'zstd' && !hasZstd ? 'no zstd' : undefined }, async () => {
      const dir = fresh('cp');
      fs.writeFileSync(path.join(dir, 'pstree.img'), 'pstree');
      fs.writeFileSync(path.join(dir, 'pages-1.img'), crypto.randomBytes(3 * MIB));
      const manifest = await checkpointManifest(dir, meta, config);
      const wire = new PassThrough();
      const sent = format === 'none' ? pipeline(packCheckpoint(dir, manifest), wire) : pipeline(packCheckpoint(dir, manifest), compressor('zstd'), wire);
      const parent = fresh('parent');
      const got = await receiveCheckpoint(wire, parent, { voice: archiveVoice('checkpoint stream from peer', 'peer') });
      await sent;
      assert.deepEqual(got.manifest.files, manifest.files);
      assert.deepEqual(fs.readFileSync(path.join(got.dir, 'images', 'pages-1.img')), fs.readFileSync(path.join(dir, 'pages-1.img')));
    });
  }

  test('a peer\'s unsafe entry is ECORRUPT (a user\'s file: EINVAL), and nothing is left behind', async () => {
    const writer = new TarWriter();
    void (async () => {
      await writer.add({ name: '../evil' }, Buffer.from('x'));
      writer.finish();
    })();
    const parent = fresh('parent');
    await refusedWith('ECORRUPT', /^checkpoint stream has an unsafe entry \.\.\/evil$/, receiveCheckpoint(writer.readable, parent, { voice: archiveVoice('checkpoint stream', 'peer') }));
    assert.deepEqual(fs.readdirSync(parent), []);
  });
});
