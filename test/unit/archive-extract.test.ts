import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import * as tar from 'tar-stream';
import { extractTar, type ExtractOptions } from '../../archive/extract';
import { actionFor, entryPath, FILES_POLICY, linkTarget, ROOTFS_POLICY, TREE_POLICY, type ExtractPolicy } from '../../archive/policy';
import type { Voice } from '../../archive/refusal';
import { readTar } from '../../archive/tar-reader';
import { packTree, unpackTree } from '../../archive/tree-tar';
import { ErrorCode, TsvzError } from '../../lib/errors';

/** The one extractor under each policy: what each lets through, and the code of what it refuses. */

const isRoot = process.getuid?.() === 0;
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-extract-'));
after(() => fs.rmSync(base, { recursive: true, force: true }));
let seq = 0;
const fresh = (label: string) => {
  const dir = path.join(base, `${label}-${++seq}`);
  fs.mkdirSync(dir);
  return dir;
};

type Spec = { header: Partial<tar.Header> & { name: string }; data?: string | Buffer };
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

async function tarBytes(entries: Spec[], opts: { end?: boolean } = {}): Promise<Buffer> {
  const pack = tar.pack();
  for (const { header, data } of entries) {
    const h = { mode: 0o644, ...me, ...header };
    if (data === undefined) pack.entry(h);
    else pack.entry(h, data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(Buffer.from(c as Uint8Array));
  const all = Buffer.concat(chunks);
  return opts.end === false ? all.subarray(0, all.length - 1024) : all; // tar-stream ends with two zero blocks
}

const user: Voice = { subject: 'test archive', entries: 'test', origin: 'user' };
const peer: Voice = { subject: 'test stream', entries: 'test', origin: 'peer' };

async function extract(entries: Spec[] | Buffer, policy: Readonly<ExtractPolicy>, voice = user, extra: Partial<ExtractOptions> = {}, dest = fresh('dest')) {
  const bytes = Buffer.isBuffer(entries) ? entries : await tarBytes(entries);
  return { dest, report: await extractTar(Readable.from([bytes]), dest, { policy, voice, ...extra }) };
}

async function refusedWith(code: ErrorCode, pattern: RegExp, run: Promise<unknown>): Promise<void> {
  await assert.rejects(run, (err: unknown) => {
    assert.ok(err instanceof TsvzError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('path policy', () => {
  test('names become root-relative; ".." anywhere and NUL bytes are refused; "/" is stripped or refused', () => {
    assert.deepEqual(entryPath('./etc//passwd', 'refuse'), { path: 'etc/passwd', stripped: false });
    assert.deepEqual(entryPath('./', 'refuse'), { path: '', stripped: false });
    assert.deepEqual(entryPath('/etc/passwd', 'strip'), { path: 'etc/passwd', stripped: true });
    assert.deepEqual(entryPath('/etc/passwd', 'refuse'), { kind: 'unsafe-path', name: '/etc/passwd' });
    for (const name of ['..', '../x', 'a/../../x', 'a/b/..']) assert.equal((entryPath(name, 'strip') as { kind: string }).kind, 'unsafe-path', name);
    assert.equal((entryPath('a\0b', 'strip') as { kind: string }).kind, 'nul-in-name');
  });

  test('hard link targets must be root-relative, whatever the policy does with names', () => {
    assert.deepEqual(linkTarget('l', './bin/sh'), { path: 'bin/sh' });
    for (const t of ['/bin/sh', '../x', 'a/../../x', '', '.']) assert.equal((linkTarget('l', t) as { kind: string }).kind, 'link-escapes', t);
  });

  test('each policy decides per type', () => {
    assert.equal(actionFor(ROOTFS_POLICY, 'character-device'), 'skip');
    assert.equal(actionFor(TREE_POLICY, 'character-device'), 'create');
    assert.equal(actionFor(FILES_POLICY, 'symlink'), 'refuse');
    assert.equal(actionFor(FILES_POLICY, 'file'), 'create');
    assert.equal(actionFor(TREE_POLICY, null), 'refuse');
    assert.equal(actionFor(ROOTFS_POLICY, undefined), 'skip');
  });
});

describe('one extractor, three policies', () => {
  test('setuid bits: dropped for a rootfs tarball, kept for a volume tree', async () => {
    const entries: Spec[] = [{ header: { name: 'su', type: 'file', mode: 0o4755 }, data: 'x' }];
    const rootfs = await extract(entries, ROOTFS_POLICY);
    assert.equal(fs.statSync(path.join(rootfs.dest, 'su')).mode & 0o7777, 0o755);
    const tree = await extract([{ header: { name: '.', type: 'directory', mode: 0o755 } }, ...entries], TREE_POLICY, peer);
    assert.equal(fs.statSync(path.join(tree.dest, 'su')).mode & 0o7777, 0o4755);
  });

  test('plain data files are private to us, whatever modes and owners the archive claims', async () => {
    const { dest } = await extract([{ header: { name: 'img', type: 'file', mode: 0o4777, uid: 1234, gid: 1234 }, data: 'x' }], FILES_POLICY);
    const st = fs.statSync(path.join(dest, 'img'));
    assert.equal(st.mode & 0o7777, 0o600);
    assert.deepEqual([st.uid, st.gid], [me.uid, me.gid]);
  });

  test('a forbidden entry is EINVAL in the user\'s own archive and ECORRUPT in a peer\'s stream', async () => {
    const entries: Spec[] = [{ header: { name: 'link', type: 'symlink', linkname: '/etc/shadow' } }];
    await refusedWith('EINVAL', /test entry "link" has an unsupported type \(symlink\)/, extract(entries, FILES_POLICY, user));
    await refusedWith('ECORRUPT', /test entry "link" has an unsupported type \(symlink\)/, extract(entries, FILES_POLICY, peer));
    await refusedWith('EINVAL', /test entry "\.\.\/x" escapes the root/, extract([{ header: { name: '../x', type: 'file' }, data: 'x' }], ROOTFS_POLICY, user));
    await refusedWith('ECORRUPT', /test entry "\/x" escapes the root/, extract([{ header: { name: '/x', type: 'file' }, data: 'x' }], TREE_POLICY, peer));
  });

  test('an entry again: replaces a file in a rootfs (tar\'s way), refused in a tree', async () => {
    const twice: Spec[] = [{ header: { name: 'f', type: 'file' }, data: 'old' }, { header: { name: 'f', type: 'file' }, data: 'new' }];
    const { dest } = await extract(twice, ROOTFS_POLICY);
    assert.equal(fs.readFileSync(path.join(dest, 'f'), 'utf8'), 'new');
    await refusedWith('ECORRUPT', /test entry "f" appears twice/, extract(twice, TREE_POLICY, peer));
  });

  test('a parent without an entry: made for a rootfs, refused in a tree', async () => {
    const entries: Spec[] = [{ header: { name: 'a/b/c', type: 'file' }, data: 'x' }];
    const { dest } = await extract(entries, ROOTFS_POLICY);
    assert.equal(fs.statSync(path.join(dest, 'a/b')).mode & 0o777, 0o755);
    await refusedWith('ECORRUPT', /test entry "a\/b\/c" comes before its parent directory "a"/, extract(entries, TREE_POLICY, peer));
  });

  test('a hard link through a symlinked directory cannot reach a file outside', async () => {
    const outside = fresh('outside');
    fs.writeFileSync(path.join(outside, 'secret'), 'secret');
    const entries: Spec[] = [{ header: { name: 'ln', type: 'symlink', linkname: outside } }, { header: { name: 'x', type: 'link', linkname: 'ln/secret' } }];
    await refusedWith('EINVAL', /test hard link "x" -> "ln\/secret" does not name a file extracted before it/, extract(entries, ROOTFS_POLICY));
    assert.equal(fs.statSync(path.join(outside, 'secret')).nlink, 1);
  });

  test('devices and fifos: skipped with a note for a rootfs, made for a volume tree', { skip: isRoot ? undefined : 'mknod of a device needs root' }, async () => {
    const entries: Spec[] = [
      { header: { name: '.', type: 'directory', mode: 0o755 } },
      { header: { name: 'null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 } },
      { header: { name: 'loop', type: 'block-device', mode: 0o660, devmajor: 7, devminor: 300 } },
      { header: { name: 'pipe', type: 'fifo', mode: 0o640 } },
    ];
    const rootfs = await extract(entries, ROOTFS_POLICY);
    assert.deepEqual(rootfs.report.skipped, ['null: device node skipped', 'loop: device node skipped', 'pipe: fifo skipped']);
    const tree = await extract(entries, TREE_POLICY, peer);
    assert.equal(tree.report.nodes, 3);
    const st = fs.lstatSync(path.join(tree.dest, 'null'));
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, fs.statSync('/dev/null').rdev);
    assert.equal(st.mode & 0o7777, 0o666);
    const loop = fs.lstatSync(path.join(tree.dest, 'loop'));
    assert.ok(loop.isBlockDevice());
    assert.deepEqual([Math.floor(loop.rdev / 256) & 0xfff, (loop.rdev & 0xff) | ((loop.rdev >> 12) & ~0xff)], [7, 300]);
    assert.ok(fs.lstatSync(path.join(tree.dest, 'pipe')).isFIFO());
    // And packTree sends them back as they are.
    const again = fresh('again');
    await unpackTree(packTree(tree.dest), again);
    assert.equal(fs.lstatSync(path.join(again, 'null')).rdev, st.rdev);
    assert.ok(fs.lstatSync(path.join(again, 'pipe')).isFIFO());
  });
});

describe('limits and damage', () => {
  const files = (n: number, size: number): Spec[] => Array.from({ length: n }, (_, i) => ({ header: { name: `f${i}`, type: 'file' }, data: Buffer.alloc(size, 1) }));

  test('entry count and declared data are bounded before any data is read: ELIMIT', async () => {
    await refusedWith('ELIMIT', /^test archive has more than 2 entries$/, extract(files(3, 1), ROOTFS_POLICY, user, { limits: { maxEntries: 2 } }));
    await refusedWith('ELIMIT', /^test archive holds more than 1\.0 KiB of data$/, extract(files(2, 600), ROOTFS_POLICY, user, { limits: { maxBytes: 1024 } }));
    // A header that claims more than the limit is refused before its data arrives (there is none here).
    const claim = await tarBytes([{ header: { name: 'big', type: 'file' }, data: '' }]);
    claim.write('01000000000\0', 124, 'latin1'); // the size field, in octal: 128 MiB
    const sum = [...claim.subarray(0, 512)].reduce((a, b, i) => a + (i >= 148 && i < 156 ? 32 : b), 0);
    claim.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    await refusedWith('ELIMIT', /holds more than/, extract(claim.subarray(0, 512), ROOTFS_POLICY, user, { limits: { maxBytes: 1024 * 1024 } }));
  });

  test('a stream cut exactly between two entries is truncated, not a smaller archive', async () => {
    const cut = await tarBytes(files(2, 100), { end: false });
    await refusedWith('ECORRUPT', /^test stream is truncated$/, extract(cut, TREE_POLICY, peer));
    await refusedWith('ECORRUPT', /^test archive is truncated$/, extract(cut, ROOTFS_POLICY, user));
  });

  test('not a tar, and an empty stream: ECORRUPT', async () => {
    await refusedWith('ECORRUPT', /^test archive is not a valid tar archive: Invalid tar header/, extract(Buffer.alloc(2048, 'x'), ROOTFS_POLICY));
    await refusedWith('ECORRUPT', /^test archive has no entries$/, extract(Buffer.alloc(0), ROOTFS_POLICY));
  });

  test('a small entry read into memory is bounded: ELIMIT', async () => {
    const bytes = await tarBytes([{ header: { name: 'manifest.json', type: 'file' }, data: Buffer.alloc(2000, 0x20) }]);
    const run = (async () => {
      for await (const e of readTar(Readable.from([bytes]), { voice: user, absoluteNames: 'refuse' })) await e.readAll(1000, user);
    })();
    await refusedWith('ELIMIT', /test entry "manifest\.json" is larger than 1000 B/, run);
  });

  test('an expected sha256 is checked as the data streams in', async () => {
    const entries: Spec[] = [{ header: { name: 'a', type: 'file' }, data: 'hello' }];
    const good = '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';
    const { dest } = await extract(entries, FILES_POLICY, user, { expect: () => ({ sha256: good }) });
    assert.equal(fs.readFileSync(path.join(dest, 'a'), 'utf8'), 'hello');
    await refusedWith('ECORRUPT', /checksum differs/, extract(entries, FILES_POLICY, user, { expect: () => ({ sha256: good.replace('2', '3') }) }));
  });
});
