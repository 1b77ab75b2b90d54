import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DevEntry, fillDev } from '../../checkpoint/dev-tmpfs';

describe("a checkpoint's /dev list, made again (fillDev)", () => {
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-dev-'));
  after(() => fs.rmSync(top, { recursive: true, force: true }));
  let n = 0;
  const fresh = () => {
    const dir = path.join(top, String(n++));
    fs.mkdirSync(dir);
    return dir;
  };
  const at = Date.UTC(2026, 0, 2, 3, 4, 5);
  // Our own uid and gid: unit tests run without root.
  const entry = (p: string, type: DevEntry['type'], more: Partial<DevEntry> = {}): DevEntry => ({ path: p, type, mode: 0o644, uid: process.getuid!(), gid: process.getgid!(), mtimeMs: at, ...more });

  it('makes directories, files, hard links, symlinks and fifos with their modes and times', () => {
    const dir = fresh();
    fillDev(dir, [
      entry('shm', 'dir', { mode: 0o1777 }),
      entry('shm/seg', 'file', { mode: 0o600, data: Buffer.from('shared').toString('base64') }),
      entry('shm/again', 'link', { target: 'shm/seg' }),
      entry('fd', 'symlink', { target: '/proc/self/fd', mode: 0o777 }),
      entry('initctl', 'fifo', { mode: 0o600 }),
    ]);
    const shm = fs.statSync(path.join(dir, 'shm'));
    assert.equal(shm.mode & 0o7777, 0o1777);
    assert.equal(shm.mtimeMs, at, 'a directory keeps its time though entries were made in it');
    assert.equal(fs.readFileSync(path.join(dir, 'shm/seg'), 'utf8'), 'shared');
    assert.equal(fs.statSync(path.join(dir, 'shm/seg')).mode & 0o7777, 0o600);
    assert.equal(fs.statSync(path.join(dir, 'shm/again')).ino, fs.statSync(path.join(dir, 'shm/seg')).ino);
    assert.equal(fs.readlinkSync(path.join(dir, 'fd')), '/proc/self/fd');
    assert.ok(fs.lstatSync(path.join(dir, 'initctl')).isFIFO());
  });

  it('refuses entries that would land outside the directory', () => {
    const hostile: [string, DevEntry[]][] = [
      ['..', [entry('../escape', 'file', { data: '' })]],
      ['an absolute path', [entry('/etc/escape', 'file', { data: '' })]],
      ['through a symlink it made', [entry('up', 'symlink', { target: '..' }), entry('up/escape', 'file', { data: '' })]],
      ['a parent it never made', [entry('nodir/escape', 'file', { data: '' })]],
      ['a hard link to an outside file', [entry('pw', 'link', { target: '../../etc/passwd' })]],
    ];
    for (const [what, entries] of hostile) {
      const dir = fresh();
      assert.throws(() => fillDev(dir, entries), /tsvz-dev\.json: (entry|hard link) "/, what);
      assert.equal(fs.existsSync(path.join(dir, '..', 'escape')), false, what);
    }
    assert.equal(fs.existsSync(path.join(top, 'escape')), false);
  });

  it('refuses an entry of an unknown type', () => {
    assert.throws(() => fillDev(fresh(), [entry('sock', 'socket' as DevEntry['type'])]), /unknown type/);
  });
});
