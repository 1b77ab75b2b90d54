import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { extractTarball } from '../../archive/tar-extract';
import { ErrorCode, InvalidArgumentError, NotFoundError, TsvzError } from '../../lib/errors';

type Spec = { header: tar.Header | (Partial<tar.Header> & { name: string }); data?: string | Buffer };

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-tar-'));
let seq = 0;

/** A fresh empty directory under the test's temp dir. */
function freshDir(label: string): string {
  const dir = path.join(base, `${label}-${++seq}`);
  fs.mkdirSync(dir);
  return dir;
}

/** Build a tar archive with tar-stream's pack() and write it to a file. */
async function makeTar(entries: Spec[], opts: { gzip?: boolean } = {}): Promise<string> {
  const pack = tar.pack();
  for (const { header, data } of entries) {
    if (data === undefined) pack.entry(header);
    else pack.entry(header, data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(Buffer.from(chunk as Uint8Array));
  let buf = Buffer.concat(chunks);
  if (opts.gzip) buf = zlib.gzipSync(buf);
  const file = path.join(base, `archive-${++seq}.tar${opts.gzip ? '.gz' : ''}`);
  fs.writeFileSync(file, buf);
  return file;
}

function file(name: string, data: string, extra: Partial<tar.Header> = {}): Spec {
  return { header: { name, type: 'file', mode: 0o644, ...extra }, data };
}

function dir(name: string, extra: Partial<tar.Header> = {}): Spec {
  return { header: { name, type: 'directory', mode: 0o755, ...extra } };
}

function symlink(name: string, linkname: string): Spec {
  return { header: { name, type: 'symlink', linkname, mode: 0o777 } };
}

function hardlink(name: string, linkname: string): Spec {
  return { header: { name, type: 'link', linkname, mode: 0o644 } };
}

function mode(p: string): number {
  return fs.lstatSync(p).mode & 0o7777;
}

/**
 * Assert extraction fails with `code` (EINVAL: an entry the policy forbids in the user's tarball;
 * ELIMIT: over a limit; ECORRUPT: damaged or not a tar) and a message matching `message`, leaving dest empty.
 */
async function assertRefused(archive: string, dest: string, message: RegExp, limits = {}, code: ErrorCode = 'EINVAL'): Promise<void> {
  await assert.rejects(extractTarball(archive, dest, limits), (err: unknown) => {
    assert.ok(err instanceof TsvzError, `expected a TsvzError, got ${String(err)}`);
    assert.equal(err.code, code, String(err));
    if (code === 'EINVAL') assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, message);
    return true;
  });
  assert.deepEqual(fs.readdirSync(dest), [], 'dest must be left empty');
}

describe('extractTarball', () => {
  after(() => fs.rmSync(base, { recursive: true, force: true }));

  test('extracts a normal archive: files, dirs, symlink, hardlink, modes, owners, content', async () => {
    const mtime = new Date('2020-01-02T03:04:05Z');
    const archive = await makeTar([
      dir('./', { mode: 0o755 }),
      dir('etc/', { mode: 0o755, mtime }),
      file('etc/hostname', 'box\n', { mode: 0o640, uid: 1000, gid: 1001, mtime }),
      file('bin/busybox', 'ELF...', { mode: 0o755 }), // parent "bin" has no entry of its own
      symlink('bin/sh', '/bin/busybox'),
      hardlink('bin/ls', 'bin/busybox'),
      dir('ro/', { mode: 0o555 }), // read-only dir must not block its child
      file('ro/inside', 'x'),
      file('empty', ''),
    ]);
    const dest = freshDir('normal');
    const report = await extractTarball(archive, dest);

    assert.deepEqual(report, { files: 4, dirs: 3, symlinks: 1, hardlinks: 1, bytes: 4 + 6 + 1, skipped: [] });
    assert.equal(fs.readFileSync(path.join(dest, 'etc/hostname'), 'utf8'), 'box\n');
    const st = fs.statSync(path.join(dest, 'etc/hostname'));
    assert.equal(st.mode & 0o7777, 0o640);
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 1001);
    assert.equal(st.mtime.getTime(), mtime.getTime());
    assert.equal(fs.statSync(path.join(dest, 'etc')).mtime.getTime(), mtime.getTime());
    assert.equal(mode(path.join(dest, 'bin')), 0o755);
    assert.equal(fs.readlinkSync(path.join(dest, 'bin/sh')), '/bin/busybox');
    assert.equal(fs.statSync(path.join(dest, 'bin/ls')).ino, fs.statSync(path.join(dest, 'bin/busybox')).ino);
    assert.equal(mode(path.join(dest, 'ro')), 0o555);
    assert.equal(fs.readFileSync(path.join(dest, 'ro/inside'), 'utf8'), 'x');
    assert.equal(fs.statSync(path.join(dest, 'empty')).size, 0);
  });

  test('absolute paths are extracted inside the root', async () => {
    // Absolute names point into a temp dir we own, so a regression cannot clobber the host's /etc.
    const outside = freshDir('outside');
    const passwd = path.join(outside, 'passwd');
    const archive = await makeTar([file(passwd, 'root:x:0:0::/root:/bin/sh\n'), file(path.join(outside, 'group'), 'root:x:0:\n')]);
    const dest = freshDir('absolute');
    const report = await extractTarball(archive, dest);
    assert.equal(fs.readFileSync(path.join(dest, passwd), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
    assert.deepEqual(fs.readdirSync(outside), []);
    assert.equal(report.files, 2);
    assert.equal(report.skipped.length, 1, 'noted once per archive');
    assert.equal(report.skipped[0], `${passwd}: leading "/" stripped (and from any later absolute names)`);
  });

  test('".." components anywhere refuse the whole archive', async () => {
    const outsideName = `tsvz-test-escape-${process.pid}-${Date.now()}`;
    const dest = freshDir('dotdot');
    for (const name of [`../${outsideName}`, `a/../../${outsideName}`, `a/b/..`]) {
      const archive = await makeTar([file('ok', 'fine'), file(name, 'pwned')]);
      await assertRefused(archive, dest, /tarball entry ".*" escapes the root/);
    }
    assert.equal(fs.existsSync(path.join(base, outsideName)), false);
  });

  test('writing through a symlinked parent is refused and nothing lands outside', async () => {
    const outside = freshDir('outside'); // stands in for /etc: a directory we own
    const dest = freshDir('symparent');
    const depth = path.relative(dest, '/').split('/').length;
    const relUp = Array(depth).fill('..').join('/') + outside; // "../../..<outside>" from dest
    for (const target of [outside, relUp]) {
      const archive = await makeTar([symlink('evil', target), file('evil/passwd', 'pwned')]);
      await assertRefused(archive, dest, /would write through symlink "evil"/);
      const viaDir = await makeTar([symlink('evil', target), dir('evil/sub')]);
      await assertRefused(viaDir, dest, /would write through symlink "evil"/);
    }
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  test('a file replacing a symlink does not follow it', async () => {
    const outside = freshDir('outside');
    fs.writeFileSync(path.join(outside, 'victim'), 'original');
    const archive = await makeTar([symlink('x', path.join(outside, 'victim')), file('x', 'new')]);
    const dest = freshDir('replace-symlink');
    await extractTarball(archive, dest);
    assert.equal(fs.readFileSync(path.join(outside, 'victim'), 'utf8'), 'original');
    assert.ok(fs.lstatSync(path.join(dest, 'x')).isFile());
    assert.equal(fs.readFileSync(path.join(dest, 'x'), 'utf8'), 'new');
  });

  test('replacing a directory with a file or symlink is refused', async () => {
    const dest = freshDir('replace-dir');
    await assertRefused(await makeTar([dir('etc/'), file('etc', 'x')]), dest, /would replace directory "etc"/);
    await assertRefused(await makeTar([file('etc/a', 'x'), symlink('etc', '/tmp')]), dest, /would replace directory "etc"/);
  });

  test('hard links out of the root, or to anything but an extracted file, are refused', async () => {
    const outside = freshDir('outside');
    fs.writeFileSync(path.join(outside, 'shadow'), 'secret');
    const dest = freshDir('hardlink');
    const cases: [string, Spec[]][] = [
      ['absolute', [hardlink('shadow', path.join(outside, 'shadow'))]],
      ['dot-dot', [hardlink('shadow', '../../../../../../../..' + path.join(outside, 'shadow'))]],
      ['missing', [hardlink('shadow', 'etc/shadow')]],
      ['to a symlink', [symlink('s', path.join(outside, 'shadow')), hardlink('shadow', 's')]],
      ['to a directory', [dir('d/'), hardlink('shadow', 'd')]],
    ];
    for (const [label, entries] of cases) {
      await assertRefused(await makeTar([file('ok', 'fine'), ...entries]), dest, /tarball hard link "shadow" -> ".*" (escapes the root|does not name a file)/);
      assert.equal(fs.statSync(path.join(outside, 'shadow')).nlink, 1, label);
    }
  });

  test('device nodes and fifos are skipped with a note', async () => {
    const archive = await makeTar([
      { header: { name: 'dev/sda', type: 'block-device', mode: 0o660, devmajor: 8, devminor: 0 } },
      { header: { name: 'dev/mem', type: 'character-device', mode: 0o640, devmajor: 1, devminor: 1 } },
      { header: { name: 'run/pipe', type: 'fifo', mode: 0o600 } },
      file('etc/ok', 'ok'),
    ]);
    const dest = freshDir('devices');
    const report = await extractTarball(archive, dest);
    assert.deepEqual(report.skipped, ['dev/sda: device node skipped', 'dev/mem: device node skipped', 'run/pipe: fifo skipped']);
    assert.equal(fs.existsSync(path.join(dest, 'dev/sda')), false);
    assert.equal(fs.existsSync(path.join(dest, 'dev/mem')), false);
    assert.equal(fs.existsSync(path.join(dest, 'run/pipe')), false);
    assert.equal(fs.readFileSync(path.join(dest, 'etc/ok'), 'utf8'), 'ok');
  });

  test('setuid and setgid bits are cleared, other bits and sticky kept', async () => {
    const archive = await makeTar([
      file('usr/bin/su', 'su', { mode: 0o4755 }),
      file('usr/bin/wall', 'wall', { mode: 0o2755 }),
      dir('tmp/', { mode: 0o1777 }),
      dir('shared/', { mode: 0o2775 }),
    ]);
    const dest = freshDir('setuid');
    const report = await extractTarball(archive, dest);
    assert.equal(mode(path.join(dest, 'usr/bin/su')), 0o755);
    assert.equal(mode(path.join(dest, 'usr/bin/wall')), 0o755);
    assert.equal(mode(path.join(dest, 'tmp')), 0o1777);
    assert.equal(mode(path.join(dest, 'shared')), 0o775);
    assert.deepEqual(report.skipped, []);
  });

  test('more data than maxBytes is refused', async () => {
    const archive = await makeTar([file('a', 'x'.repeat(600)), file('b', 'y'.repeat(600))]);
    const dest = freshDir('maxbytes');
    await assertRefused(archive, dest, /holds more than 1000 B of data/, { maxBytes: 1000 }, 'ELIMIT');
    assert.equal((await extractTarball(archive, dest, { maxBytes: 1200 })).bytes, 1200);
  });

  test('more entries than maxEntries is refused', async () => {
    const archive = await makeTar(['a', 'b', 'c', 'd', 'e'].map((n) => file(n, n)));
    const dest = freshDir('maxentries');
    await assertRefused(archive, dest, /has more than 3 entries/, { maxEntries: 3 }, 'ELIMIT');
    assert.equal((await extractTarball(archive, dest, { maxEntries: 5 })).files, 5);
  });

  test('a truncated archive is refused and cleaned up', async () => {
    const whole = await makeTar([file('first', 'ok'), file('big', 'z'.repeat(10_000))]);
    const cut = path.join(base, 'truncated.tar');
    fs.writeFileSync(cut, fs.readFileSync(whole).subarray(0, 3000)); // mid-way through "big"
    const dest = freshDir('truncated');
    await assertRefused(cut, dest, /^unreadable tarball .*truncated\.tar: Unexpected end of data$/, {}, 'ECORRUPT');
  });

  test('a gzip-compressed archive is detected and extracted', async () => {
    const archive = await makeTar([dir('etc/'), file('etc/os-release', 'ID=test\n')], { gzip: true });
    const dest = freshDir('gzip');
    const report = await extractTarball(archive, dest);
    assert.equal(report.files, 1);
    assert.equal(fs.readFileSync(path.join(dest, 'etc/os-release'), 'utf8'), 'ID=test\n');
  });

  test('corrupt gzip data is refused', async () => {
    const good = fs.readFileSync(await makeTar([file('a', 'x'.repeat(5000))], { gzip: true }));
    const bad = path.join(base, 'corrupt.tar.gz');
    fs.writeFileSync(bad, Buffer.concat([good.subarray(0, 20), Buffer.alloc(200, 0x55)]));
    await assertRefused(bad, freshDir('badgzip'), /^unreadable tarball /, {}, 'ECORRUPT');
  });

  test('a file that is not a tar is refused', async () => {
    const dest = freshDir('notatar');
    const text = path.join(base, 'notes.txt');
    fs.writeFileSync(text, 'this is not a tarball\n'.repeat(100));
    await assertRefused(text, dest, /^unreadable tarball .*notes\.txt: /, {}, 'ECORRUPT');
    const short = path.join(base, 'short.txt');
    fs.writeFileSync(short, 'hello');
    await assertRefused(short, dest, /^unreadable tarball /, {}, 'ECORRUPT');
    const empty = path.join(base, 'empty.tar');
    fs.writeFileSync(empty, '');
    await assertRefused(empty, dest, /^unreadable tarball .*: no entries/, {}, 'ECORRUPT');
  });

  test('a missing archive is NotFoundError; a non-empty destination is refused', async () => {
    const dest = freshDir('missing');
    await assert.rejects(extractTarball(path.join(base, 'nope.tar'), dest), NotFoundError);
    fs.writeFileSync(path.join(dest, 'occupied'), '');
    await assert.rejects(extractTarball(await makeTar([file('a', 'a')]), dest), /is not empty/);
  });
});
