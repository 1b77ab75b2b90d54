import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import * as protobuf from 'protobufjs';
import * as tar from 'tar-stream';
import { ArchiveManifest, extractCheckpointArchive, parseManifest, writeCheckpointArchive } from '../../checkpoint/archive';
import type { CheckpointMeta } from '../../checkpoint/catalog';
import { formatAddress, inspectCheckpoint, MAGIC, parseImage, readDumpStats } from '../../checkpoint/images';
import type { ContainerConfig } from '../../runtime/config';
import { ErrorCode, InvalidArgumentError, TsvzError } from '../../lib/errors';

const IMAGES_PROTO = path.resolve(__dirname, '..', '..', '..', 'proto', 'criu-images.proto');
const STATS_PROTO = path.resolve(__dirname, '..', '..', '..', 'proto', 'criu-stats.proto');

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-archive-'));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let seq = 0;
const fresh = (label: string) => {
  const dir = path.join(base, `${label}-${++seq}`);
  fs.mkdirSync(dir);
  return dir;
};

const meta: CheckpointMeta = {
  id: 'cp1', container: 'p1', createdAt: '2026-01-01T00:00:00.000Z', criuVersion: '4.1.1', kernel: '6.1',
  leaveRunning: false, tcpEstablished: false, dumpMs: 12, sizeBytes: 0,
};
const config = {
  version: 1, name: 'p1', hostname: 'p1', template: 'busybox', init: ['/sbin/init'], stopSignal: 'SIGTERM',
  env: [], limits: {}, net: { mode: 'none' }, pool: 'default', createdAt: '2026-01-01T00:00:00.000Z',
} as ContainerConfig;

/** A checkpoint directory with a few fake images (one large enough to span several tar blocks). */
function checkpointDir(): string {
  const dir = fresh('cp');
  fs.writeFileSync(path.join(dir, 'pstree.img'), 'pstree');
  fs.writeFileSync(path.join(dir, 'core-1.img'), 'core');
  fs.writeFileSync(path.join(dir, 'pages-1.img'), Buffer.alloc(64 * 1024, 7));
  fs.writeFileSync(path.join(dir, 'stats-dump'), 'stats');
  fs.writeFileSync(path.join(dir, 'checkpoint.json'), JSON.stringify(meta));
  return dir;
}

async function exported(suffix = '.tar'): Promise<string> {
  const file = path.join(fresh('out'), `cp${suffix}`);
  await writeCheckpointArchive(file, checkpointDir(), meta, config);
  return file;
}

interface Item { header: Partial<tar.Header> & { name: string }; data?: Buffer }

async function readTar(file: string): Promise<Item[]> {
  const items: Item[] = [];
  for await (const entry of tar.extract().end(fs.readFileSync(file)) as unknown as AsyncIterable<tar.ExtractEvents['entry'][1]>) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    items.push({ header: { ...entry.header }, data: Buffer.concat(chunks) });
  }
  return items;
}

async function writeTar(items: Item[]): Promise<string> {
  const pack = tar.pack();
  for (const { header, data } of items) {
    if (data === undefined) pack.entry({ ...header, size: 0 });
    else pack.entry({ ...header, size: data.length }, data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(Buffer.from(chunk as Uint8Array));
  const file = path.join(fresh('tar'), 'a.tar');
  fs.writeFileSync(file, Buffer.concat(chunks));
  return file;
}

/** A good archive, rewritten by `edit` (which may change, drop or add entries and the manifest). */
async function tampered(edit: (items: Item[], manifest: ArchiveManifest) => Item[] | void): Promise<string> {
  const items = await readTar(await exported());
  const manifest = JSON.parse(items[0].data!.toString()) as ArchiveManifest;
  const out = edit(items, manifest) ?? items;
  if (out[0]?.header.name === 'manifest.json') out[0].data = Buffer.from(JSON.stringify(manifest));
  return writeTar(out);
}

/**
 * Extraction fails with `code` (ECORRUPT: truncated, tampered, not an archive; EINVAL: an unsafe
 * entry in the user's file; ELIMIT: over a limit) and `pattern`, and leaves nothing behind.
 */
async function refused(file: string, pattern: RegExp, limits = {}, code: ErrorCode = 'ECORRUPT'): Promise<void> {
  const parent = fresh('parent');
  await assert.rejects(extractCheckpointArchive(file, parent, limits), (err: Error) => {
    assert.ok(err instanceof TsvzError, `${err.constructor.name}: ${err.message}`);
    assert.equal(err.code, code, err.message);
    if (code === 'EINVAL') assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return true;
  });
  assert.deepEqual(fs.readdirSync(parent), [], 'nothing left behind');
}

const hasZstd = spawnSync('zstd', ['--version']).status === 0;

describe('checkpoint archives', () => {
  test('round trip: manifest first, every image verified, checkpoint.json not carried', async () => {
    const file = await exported();
    const items = await readTar(file);
    assert.deepEqual(items.map((i) => i.header.name), ['manifest.json', 'config.json', 'images/core-1.img', 'images/pages-1.img', 'images/pstree.img', 'images/stats-dump']);
    const parent = fresh('parent');
    const { dir, manifest } = await extractCheckpointArchive(file, parent);
    assert.equal(manifest.container, 'p1');
    assert.deepEqual(manifest.checkpoint, meta);
    assert.deepEqual(manifest.config, config);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'images')).sort(), ['core-1.img', 'pages-1.img', 'pstree.img', 'stats-dump']);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'images', 'pages-1.img')), Buffer.alloc(64 * 1024, 7));
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), config);
  });

  test('.tar.zst is compressed with zstd and read back', { skip: hasZstd ? undefined : 'no zstd' }, async () => {
    const file = await exported('.tar.zst');
    assert.deepEqual(fs.readFileSync(file).subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
    assert.ok(fs.statSync(file).size < 16 * 1024, 'compressed');
    const { manifest } = await extractCheckpointArchive(file, fresh('parent'));
    assert.equal(manifest.files.length, 5);
    const buf = fs.readFileSync(file);
    const cut = path.join(fresh('cut'), 'cut.tar.zst');
    fs.writeFileSync(cut, buf.subarray(0, buf.length - 20));
    await refused(cut, /^archive .* is truncated$/);
  });

  test('export into a missing directory fails cleanly', async () => {
    const out = fresh('out');
    await assert.rejects(writeCheckpointArchive(path.join(out, 'no', 'cp.tar'), checkpointDir(), meta, config), /directory .*no does not exist/);
    assert.deepEqual(fs.readdirSync(out), []);
  });

  test('onManifest runs before any file is written and can refuse', async () => {
    const parent = fresh('parent');
    await assert.rejects(
      extractCheckpointArchive(await exported(), parent, { onManifest: (m) => { throw new InvalidArgumentError(`CRIU ${m.checkpoint.criuVersion} refused`); } }),
      /CRIU 4\.1\.1 refused/,
    );
    assert.deepEqual(fs.readdirSync(parent), []);
  });

  test('a flipped byte in an image: checksum mismatch', async () => {
    const file = await tampered((items) => { items.find((i) => i.header.name === 'images/pages-1.img')!.data![4097] ^= 1; });
    await refused(file, /^archive .* is tampered: images\/pages-1\.img checksum mismatch$/);
  });

  test('an image of another size than listed', async () => {
    const file = await tampered((items) => { const i = items.find((x) => x.header.name === 'images/core-1.img')!; i.data = Buffer.from('core!'); });
    await refused(file, /is tampered: images\/core-1\.img size mismatch/);
  });

  test('unlisted, duplicated and missing entries', async () => {
    await refused(await tampered((items) => [...items, { header: { name: 'images/extra.img' }, data: Buffer.from('x') }]), /is tampered: unexpected entry images\/extra\.img/);
    await refused(await tampered((items) => [...items, items[2]]), /is tampered: images\/core-1\.img appears twice/);
    await refused(await tampered((items) => items.filter((i) => i.header.name !== 'images/stats-dump')), /is truncated: images\/stats-dump is missing/);
    await refused(await tampered((items) => [...items, { header: { name: 'images', type: 'directory' } }]), /unexpected entry images/);
  });

  test('config.json must be the config in the manifest', async () => {
    await refused(await tampered((items, m) => {
      const cfg = Buffer.from(JSON.stringify({ ...config, init: ['/bin/evil'] }));
      items[1].data = cfg;
      const listed = m.files.find((f) => f.path === 'config.json')!;
      listed.size = cfg.length;
      listed.sha256 = require('node:crypto').createHash('sha256').update(cfg).digest('hex');
    }), /is tampered: config\.json differs from the manifest/);
  });

  test('truncated archives', async () => {
    const buf = fs.readFileSync(await exported());
    for (const len of [0, 100, 1024 + 300, Math.floor(buf.length / 2), buf.length - 1024 - 512]) {
      const file = path.join(fresh('cut'), 'cut.tar');
      fs.writeFileSync(file, buf.subarray(0, len));
      await refused(file, /^archive .* is (truncated|empty)/);
    }
  });

  test('unsafe entries: .., absolute, symlink, hard link, device', async () => {
    const evil = (header: Item['header'], data?: Buffer) => tampered((items) => [items[0], { header, data }, ...items.slice(1)]);
    await refused(await evil({ name: '../evil' }, Buffer.from('x')), /^archive .* has an unsafe entry \.\.\/evil$/, {}, 'EINVAL');
    await refused(await evil({ name: 'images/../../evil' }, Buffer.from('x')), /has an unsafe entry images\/\.\.\/\.\.\/evil/, {}, 'EINVAL');
    await refused(await evil({ name: '/etc/evil' }, Buffer.from('x')), /has an unsafe entry \/etc\/evil/, {}, 'EINVAL');
    await refused(await evil({ name: 'images/link', type: 'symlink', linkname: '/etc/shadow' }), /has an unsafe entry images\/link \(symlink\)/, {}, 'EINVAL');
    await refused(await evil({ name: 'images/hard', type: 'link', linkname: 'config.json' }), /has an unsafe entry images\/hard \(link\)/, {}, 'EINVAL');
    await refused(await evil({ name: 'images/tty', type: 'character-device', devmajor: 4, devminor: 1 }), /has an unsafe entry images\/tty \(character-device\)/, {}, 'EINVAL');
    // Before the manifest too.
    const first = await tampered((items) => [{ header: { name: '../evil' }, data: Buffer.from('x') }, ...items]);
    await refused(first, /has an unsafe entry \.\.\/evil/, {}, 'EINVAL');
  });

  test('the manifest must come first and be well-formed', async () => {
    await refused(await tampered((items) => [items[1], items[0], ...items.slice(2)]), /is not a tsvz checkpoint archive: it does not start with manifest\.json/);
    await refused(await tampered((_, m) => { m.files[2].path = 'images/../x'; }), /invalid manifest: bad file entry/);
    await refused(await tampered((_, m) => { m.files[2].sha256 = 'nope'; }), /invalid manifest: bad sha256/);
    await refused(await tampered((_, m) => { (m as any).version = 2; }), /invalid manifest: version 2/);
    await refused(await tampered((_, m) => { m.checkpoint.id = '../x'; }), /invalid manifest/);
    await refused(await tampered((_, m) => { (m.checkpoint as any).dumpMs = 'slow'; }), /invalid manifest: checkpoint dumpMs is not a number/);
    await refused(await tampered((_, m) => { m.config.init = []; }), /invalid manifest: bad container config/);
    await refused(await tampered((_, m) => { (m.config as any).env = [1]; }), /invalid manifest: bad container config/);
    await refused(await exported(), /invalid manifest: its files hold more than 1000 bytes/, { maxBytes: 1000 }, 'ELIMIT');
    await refused(await writeTar([{ header: { name: 'manifest.json' }, data: Buffer.from('{') }]), /invalid manifest: not JSON/);
  });

  test('not an archive at all', async () => {
    const file = path.join(fresh('junk'), 'junk.tar');
    fs.writeFileSync(file, Buffer.alloc(4096, 'x'));
    await refused(file, /is not a tsvz checkpoint archive/);
  });

  test('parseManifest accepts what export writes', async () => {
    const items = await readTar(await exported());
    const m = parseManifest(items[0].data!, 'a.tar');
    assert.equal(m.files.length, 5);
    assert.ok(m.files.every((f) => /^[0-9a-f]{64}$/.test(f.sha256)));
  });
});

describe('CRIU image files', () => {
  const root = protobuf.parse(fs.readFileSync(IMAGES_PROTO, 'utf8')).root;
  const statsRoot = protobuf.parse(fs.readFileSync(STATS_PROTO, 'utf8')).root;
  const encode = (name: string, value: object) => {
    const t = name === 'stats_entry' ? statsRoot.lookupType('tsvz.criu.stats.stats_entry') : root.lookupType(`tsvz.criu.images.${name}`);
    return Buffer.from(t.encode(t.fromObject(value)).finish());
  };
  const image = (magics: number[], entries: Buffer[]) => {
    const parts: Buffer[] = magics.map((m) => { const b = Buffer.alloc(4); b.writeUInt32LE(m); return b; });
    for (const e of entries) { const b = Buffer.alloc(4); b.writeUInt32LE(e.length); parts.push(b, e); }
    return Buffer.concat(parts);
  };

  test('readDumpStats decodes stats-dump (service magic + stats magic)', () => {
    const dir = fresh('stats');
    const stats = encode('stats_entry', { dump: { freezingTime: 300, frozenTime: 86000, memdumpTime: 12000, memwriteTime: 8000, pagesScanned: 9000, pagesSkippedParent: 0, pagesWritten: 8209 } });
    fs.writeFileSync(path.join(dir, 'stats-dump'), image([MAGIC.service, MAGIC.stats], [stats]));
    assert.deepEqual(readDumpStats(dir), {
      freezingUs: 300, frozenUs: 86000, memdumpUs: 12000, memwriteUs: 8000, pagesScanned: 9000, pagesSkippedParent: 0, pagesWritten: 8209,
    });
    assert.equal(readDumpStats(fresh('none')), undefined);
  });

  test('inspectCheckpoint counts written pages in CRIU 4.1 and 4.2 pagemaps', () => {
    const dir = fresh('inspect');
    fs.writeFileSync(path.join(dir, 'pstree.img'), image([MAGIC.common, MAGIC.pstree], [encode('pstree_entry', { pid: 1, ppid: 0, threads: [1, 2] })]));
    fs.writeFileSync(path.join(dir, 'core-1.img'), image([MAGIC.common, MAGIC.core], [encode('core_entry', { tc: { taskState: 1, comm: 'init' } })]));
    fs.writeFileSync(path.join(dir, 'pagemap-1.img'), image([MAGIC.common, MAGIC.pagemap], [
      encode('pagemap_head', { pagesId: 1 }),
      encode('pagemap_entry', { vaddr: 4096, compatNrPages: 3 }), // 4.1: count in field 2
      encode('pagemap_entry', { vaddr: 8192, compatNrPages: 2, inParent: true }), // 4.1: in the parent dump
      encode('pagemap_entry', { vaddr: 65536, compatNrPages: 0, nrPages: 5, flags: 4 }), // 4.2: PE_PRESENT
      encode('pagemap_entry', { vaddr: 131072, compatNrPages: 0, nrPages: 7, flags: 2 }), // 4.2: lazy, not written
    ]));
    const r = inspectCheckpoint(dir);
    assert.deepEqual(r.processes, [{ pid: 1, ppid: 0, threads: 2, comm: 'init', state: 'alive', vmas: 0, vmaBytes: 0, dumpedBytes: 8 * 4096 }]);
    assert.equal(r.memory.pagesWritten, 8);
  });

  test('parseImage checks the magic and entry sizes', () => {
    const good = image([MAGIC.common, MAGIC.pstree], [Buffer.from('ab'), Buffer.from('')]);
    assert.deepEqual(parseImage(good, MAGIC.pstree).map((b) => b.toString()), ['ab', '']);
    assert.throws(() => parseImage(good, MAGIC.core), /magic 0x50273030, expected 0x55053847/);
    assert.throws(() => parseImage(good.subarray(0, good.length - 5), MAGIC.pstree), /truncated entry/);
    assert.throws(() => parseImage(Buffer.from([1, 2]), MAGIC.pstree), /too short/);
  });

  test('formatAddress: CRIU stores addresses as host-endian words of network-order bytes', () => {
    assert.equal(formatAddress([0x0100007f], false), '127.0.0.1');
    assert.equal(formatAddress([], false), '0.0.0.0');
    assert.equal(formatAddress([0, 0, 0, 0x01000000], true), '::1');
    assert.equal(formatAddress([0x000080fe, 0, 0, 0x01000000], true), 'fe80::1');
  });
});
