import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { copyTree, parallelPlan } from '../../storage/copy-tree';
import { readXattrs, setXattr } from '../../lib/libc-fs';

const MiB = 1024 ** 2;
const notRoot = process.getuid?.() !== 0 ? 'needs root (owners, device nodes)' : undefined;
if (notRoot) console.log(`# skipped copy-tree tests: ${notRoot}`);

/** A big file of `mib` MiB that is mostly a hole (quick to make and to copy with --sparse), data at both ends. */
function bigSparse(file: string, mib: number): void {
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, crypto.randomBytes(64 * 1024), 0, 64 * 1024, 0);
  fs.writeSync(fd, crypto.randomBytes(64 * 1024), 0, 64 * 1024, mib * MiB - 64 * 1024);
  fs.closeSync(fd);
}

/** Every entry's type, mode, owner, times to the nanosecond, content, link, device and xattrs; inodes as link groups. */
function manifest(root: string): string[] {
  const out: string[] = [];
  const firstPath = new Map<bigint, string>();
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    let line = `${rel || '.'} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${rel ? st.mtimeNs : ''}`;
    if (st.isFile()) {
      line += ` ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex').slice(0, 16)}`;
      if (st.nlink > 1n) {
        if (!firstPath.has(st.ino)) firstPath.set(st.ino, rel);
        line += ` link:${firstPath.get(st.ino)}`;
      }
    }
    if (st.isSymbolicLink()) line += ` -> ${fs.readlinkSync(abs)}`;
    if (st.isCharacterDevice()) line += ` dev:${st.rdev}`;
    if (!st.isSymbolicLink()) line += ` ${[...(readXattrs(abs) ?? [])].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',')}`;
    out.push(line);
    if (st.isDirectory()) for (const child of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${child}` : child);
  };
  walk('');
  return out;
}

describe('copyTree: big files by parallel workers, the rest by one cp -a', { skip: notRoot }, () => {
  const dir = fs.mkdtempSync(path.join('/var/tmp', 'tsvz-test-copy-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src');
  const p = (rel: string) => path.join(src, rel);

  it('copies a tree with big files exactly: owners, modes, times, xattrs, hardlinks, devices', async () => {
    for (const d of ['etc', 'data/deep/er', 'dev', 'locked']) fs.mkdirSync(p(d), { recursive: true });
    fs.writeFileSync(p('etc/hostname'), 'p1\n');
    fs.linkSync(p('etc/hostname'), p('etc/hostname.link'));
    fs.symlinkSync('hostname', p('etc/alias'));
    spawnSync('mknod', [p('dev/null'), 'c', '1', '3']);
    bigSparse(p('data/a.img'), 120);
    bigSparse(p('data/deep/er/b.img'), 100);
    bigSparse(p('locked/c.img'), 90);
    bigSparse(p('data/linked.img'), 64); // two links: copied by the last cp -a, links kept
    fs.linkSync(p('data/linked.img'), p('etc/linked.img'));
    fs.chownSync(p('data/deep/er/b.img'), 1000, 1001);
    fs.chmodSync(p('data/deep/er/b.img'), 0o4750);
    setXattr(p('data/a.img'), 'user.tsvz', Buffer.from([0, 1, 0xff]));
    setXattr(p('data/deep'), 'user.dir', Buffer.from('on a directory'));
    // A parent the workers write into: made by us first, its real attributes set at the end.
    fs.chownSync(p('locked'), 1000, 1000);
    fs.chmodSync(p('locked'), 0o555);
    for (const rel of ['data/a.img', 'data/deep/er', 'data/deep', 'data', 'locked', 'etc/hostname', '']) {
      fs.utimesSync(p(rel), 1_600_000_000.123456, 1_600_000_001.654321);
    }

    const plan = await parallelPlan(src, 2);
    assert.equal(plan.length, 2, 'two workers');
    assert.deepEqual(plan.flat().map((f) => f.rel).sort(), ['data/a.img', 'data/deep/er/b.img', 'locked/c.img'], 'single-link big files only');

    const dst = path.join(dir, 'dst');
    await copyTree(src, dst);
    assert.deepEqual(manifest(dst), manifest(src));
    if (os.availableParallelism() < 2) console.log('# one core: copyTree took the plain cp -a path');
  });

  it('a tree without big files is one cp -a', async () => {
    const small = path.join(dir, 'small');
    fs.mkdirSync(small);
    fs.writeFileSync(path.join(small, 'f'), 'x');
    bigSparse(path.join(small, 'one.img'), 40); // big, but not enough of them
    assert.deepEqual(await parallelPlan(small, 2), []);
    assert.deepEqual(await parallelPlan(src, 1), [], 'one worker: nothing to share');
  });

  it('a worker that runs out of space fails the copy (cp says why), once every worker stopped', async () => {
    const small = path.join(dir, 'small-fs');
    fs.mkdirSync(small);
    // Room for the small files and two of the big ones' data (128 KiB each), not three.
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=300k', 'tsvz-test-copy', small], { encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    try {
      const dst = path.join(small, 'dst');
      await assert.rejects(copyTree(src, dst), /No space left on device/);
      const still = spawnSync('pgrep', ['-f', dst], { encoding: 'utf8' });
      assert.equal(still.stdout.trim(), '', 'no cp left running');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
