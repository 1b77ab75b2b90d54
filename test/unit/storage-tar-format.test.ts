import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, test } from 'node:test';
import * as tar from 'tar-stream';
import { TsvzError } from '../../lib/errors';
import { readXattrs, setXattr } from '../../lib/libc-fs';
import { xattrsWork } from '../helpers/xattr';
import { packTree, unpackTree } from '../../archive/tree-tar';

/** The universal send format without root: files owned by whoever runs the tests. */

const isRoot = process.getuid?.() === 0;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-tarfmt-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = path.join(scratch, String(++n));
  fs.mkdirSync(d);
  return d;
};

function describeTree(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs);
    let line = `${rel || '.'} ${st.mode.toString(8)} ${st.uid}:${st.gid}`;
    if (rel) line += ` t=${Math.floor(st.mtimeMs)}`;
    if (st.isFile()) {
      line += ` ${st.size} ${crypto.createHash('sha1').update(fs.readFileSync(abs)).digest('hex')}`;
      if (st.nlink > 1) line += ` link=${inodes.get(st.ino) ?? (inodes.set(st.ino, rel), rel)}`;
    }
    if (st.isSymbolicLink()) line += ` -> ${fs.readlinkSync(abs)}`;
    if (!st.isSymbolicLink()) line += ` ${[...(readXattrs(abs) ?? [])].map(([k, v]) => `${k}=${v.toString('hex')}`).join(',')}`;
    out.push(line);
    if (st.isDirectory()) for (const c of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${c}` : c);
  };
  walk('');
  return out;
}

async function roundTrip(src: string): Promise<{ dst: string; bytes: number }> {
  const dst = fresh();
  let bytes = 0;
  const stream = packTree(src);
  stream.on('data', (c: Buffer) => (bytes += c.length));
  await unpackTree(stream, dst);
  return { dst, bytes };
}

test('a tree comes back exactly: modes, times, links, long and non-ASCII names, holes, xattrs', async () => {
  const src = fresh();
  const p = (rel: string) => path.join(src, rel);
  fs.mkdirSync(p('a/b/c'), { recursive: true });
  fs.writeFileSync(p('a/file'), 'hello');
  fs.linkSync(p('a/file'), p('a/b/hardlink'));
  fs.symlinkSync('../file', p('a/b/sym'));
  fs.symlinkSync('/nowhere/at/all', p('dangling'));
  fs.writeFileSync(p('a/setuid'), '#!/bin/sh\n');
  fs.chmodSync(p('a/setuid'), 0o4750);
  fs.writeFileSync(p('no-perms'), 'x');
  fs.chmodSync(p('no-perms'), isRoot ? 0 : 0o400); // tar.pack has a default for mode 0: make sure it is not used
  fs.mkdirSync(p('private'), { mode: 0o700 });
  fs.writeFileSync(p(`a/b/c/${'n'.repeat(150)}`), 'long name');
  fs.writeFileSync(p('a/ünïcødé ✓'), 'utf-8 name');
  fs.symlinkSync('t'.repeat(120), p('long-target'));
  const fd = fs.openSync(p('sparse'), 'w');
  fs.writeSync(fd, 'data', 3 * 1024 * 1024);
  fs.ftruncateSync(fd, 8 * 1024 * 1024);
  fs.closeSync(fd);
  fs.writeFileSync(p('empty'), '');
  fs.utimesSync(p('a/file'), 1_500_000_000.654321, 1_500_000_000.654321);
  const xattrs = xattrsWork(src);
  if (xattrs) {
    setXattr(p('a/file'), 'user.bin', Buffer.from([0, 10, 255, 61]));
    setXattr(p('a/b'), 'user.dir', Buffer.from('d'));
  } else {
    console.log('# no user xattrs on this filesystem: xattrs not checked');
  }
  fs.utimesSync(p('a/b'), 1_400_000_000, 1_400_000_000);
  const { dst } = await roundTrip(src);
  assert.deepEqual(describeTree(dst), describeTree(src));
  assert.ok(fs.statSync(path.join(dst, 'sparse')).blocks * 512 < 1024 * 1024, 'holes are punched back');
  const mtime = (root: string) => fs.statSync(path.join(root, 'a/file'), { bigint: true }).mtimeNs;
  const drift = mtime(dst) - mtime(src);
  assert.ok(drift >= -2000n && drift <= 2000n, `mtime kept to about a microsecond (drift ${drift} ns)`);
});

test('a file name that is not UTF-8 is refused, not mangled', async () => {
  const src = fresh();
  fs.writeFileSync(Buffer.concat([Buffer.from(`${src}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
  // The tar format cannot carry the name: ENOTSUP (the drivers' native formats can).
  await assert.rejects(unpackTree(packTree(src), fresh()), (err: Error) => err instanceof TsvzError && err.code === 'ENOTSUP' && /not valid UTF-8/.test(err.message));
});

test('the destination must be empty', async () => {
  const dst = fresh();
  fs.writeFileSync(path.join(dst, 'x'), '');
  await assert.rejects(unpackTree(packTree(fresh()), dst), /not empty/);
});

type Entry = { header: tar.Header | (Partial<tar.Header> & { name: string }); body?: string };

function tarOf(entries: Entry[]): Readable {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ mode: 0o644, uid: process.getuid?.(), gid: process.getgid?.(), ...e.header }, e.body ?? '');
  pack.finalize();
  const out = new PassThrough();
  pack.pipe(out as unknown as NodeJS.WritableStream);
  return out;
}

test('streams that try to write outside the destination are refused', async () => {
  const outside = fresh();
  const cases: [string, Entry[], RegExp][] = [
    ['dot-dot', [{ header: { name: '../escape', type: 'file' }, body: 'x' }], /entry "\.\.\/escape" escapes the root/],
    ['absolute', [{ header: { name: '/etc/escape', type: 'file' }, body: 'x' }], /entry "\/etc\/escape" escapes the root/],
    ['through a symlink', [{ header: { name: 'link', type: 'symlink', linkname: outside } }, { header: { name: 'link/escape', type: 'file' }, body: 'x' }], /entry "link\/escape" would write through symlink "link"/],
    ['twice', [{ header: { name: 'f', type: 'file' }, body: 'x' }, { header: { name: 'f', type: 'file' }, body: 'y' }], /appears twice/],
    ['hardlink to nothing', [{ header: { name: 'h', type: 'link', linkname: 'missing' } }], /hard link "h" -> "missing" does not name a file/],
    ['hardlink out', [{ header: { name: 'h', type: 'link', linkname: '../../etc/passwd' } }], /hard link "h" -> "\.\.\/\.\.\/etc\/passwd" escapes the root/],
  ];
  for (const [what, entries, pattern] of cases) {
    // A peer's stream: whatever it tries is damaged data (ECORRUPT), never the user's argument.
    await assert.rejects(unpackTree(tarOf(entries), fresh()), (err: Error) => {
      assert.ok(err instanceof TsvzError && err.code === 'ECORRUPT', `${what}: ${String(err)}`);
      assert.match(err.message, pattern, what);
      return true;
    });
  }
  assert.deepEqual(fs.readdirSync(outside), []);
  assert.ok(!fs.existsSync(path.join(scratch, 'escape')));
});

test('a stream cut short is an error', async () => {
  const src = fresh();
  fs.writeFileSync(path.join(src, 'big'), crypto.randomBytes(256 * 1024));
  const whole: Buffer[] = [];
  for await (const c of packTree(src)) whole.push(c as Buffer);
  const cut = Buffer.concat(whole).subarray(0, 100 * 1024);
  await assert.rejects(unpackTree(Readable.from([cut]), fresh()), (err: Error) => err instanceof TsvzError && err.code === 'ECORRUPT');
});

test('a reader that goes away stops the packer without an unhandled error', async () => {
  const src = fresh();
  fs.writeFileSync(path.join(src, 'big'), crypto.randomBytes(2 * 1024 * 1024));
  let closed = false;
  const stream = packTree(src, { onClose: () => void (closed = true) });
  await new Promise<void>((resolve) => stream.once('data', () => resolve()));
  stream.destroy();
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(closed, 'onClose ran');
});
