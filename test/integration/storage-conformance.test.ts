import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../../lib/errors';
import { mountsUnder } from '../../lib/mounts';
import type { Pool, PoolRecord, PoolSpec } from '../../storage/driver';
import { StorageError } from '../../storage/errors';
import { readXattrs, setXattr } from '../../lib/libc-fs';
import { xattrsWork } from '../helpers/xattr';
import { negotiateFormat } from '../../storage/negotiate';
import { createPool, defaultPoolRecord, destroyPool, getDriver, openPool } from '../../storage';

/**
 * One table of cases run against every storage driver (dir, btrfs, zfs, lvm)
 * and the built-in default pool (the dir driver in the containers' own
 * directories), then cross-driver sends, full pools and bad input.
 * Everything made here is named tsvz-<tag>-... and removed in the after
 * hook, which also checks that no pool, loop device or mount is left.
 */

const MiB = 1024 ** 2;
const notRoot = process.getuid?.() !== 0 ? 'needs root (loop devices, mounts, zfs)' : undefined;
const TAG = `tsvz-${crypto.randomBytes(3).toString('hex')}`;
const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), `${TAG}-`));
const DRIVERS = ['dir', 'default', 'btrfs', 'zfs', 'lvm'] as const;
type DriverName = (typeof DRIVERS)[number];
/** The storage driver behind a row of the table: the default pool is the dir driver's. */
const driverOf = (name: DriverName) => (name === 'default' ? 'dir' : name);

/** Pool specs per driver: small, so the whole file runs in well under 90 s. */
const SPECS: Record<Exclude<DriverName, 'default'>, (size?: number) => Omit<PoolSpec, 'name'>> = {
  dir: () => ({ driver: 'dir', rootDir: ROOT }),
  btrfs: (size = 256 * MiB) => ({ driver: 'btrfs', size, rootDir: ROOT }),
  zfs: (size = 128 * MiB) => ({ driver: 'zfs', size, rootDir: ROOT }),
  lvm: (size = 256 * MiB) => ({ driver: 'lvm', size, rootDir: ROOT }),
};

/** Why a driver's tests can't run here (printed); zfs that is installed but not answering fails instead. */
async function skipReason(name: DriverName): Promise<string | undefined> {
  if (notRoot) return notRoot;
  const missing = await getDriver(driverOf(name)).missing();
  if (missing.length === 0) return undefined;
  if (name === 'lvm') return `${missing.join('; ')}; runs in the VM lane`;
  if (name === 'zfs' && missing.some((m) => m.includes('not answering'))) return undefined; // a broken host: fail loudly
  return missing.join('; ');
}
/** Filled in before the suites are declared (at the end of this file): the drivers' probes run tools. */
const SKIP = {} as Record<DriverName, string | undefined>;
const suites: (() => void)[] = [];

const records: PoolRecord[] = [];
let poolCounter = 0;

async function newPool(driver: DriverName, size?: number, extra: Partial<PoolSpec> = {}): Promise<Pool> {
  // The default pool is built in, never created: one per root, a fresh root each.
  if (driver === 'default') return openPool(defaultPoolRecord(fs.mkdtempSync(path.join(ROOT, 'default-'))));
  const rec = await createPool({ name: `${TAG}-${driver}-${++poolCounter}`, ...SPECS[driver](size), ...extra });
  records.push(rec);
  return openPool(rec);
}

// ---------------------------------------------------------------- trees

/** Does the pool's filesystem hold xattrs? Probed in a throwaway volume. */
async function poolHasXattrs(pool: Pool): Promise<boolean> {
  const dir = await pool.createVolume('xattr-probe');
  try {
    return xattrsWork(dir);
  } finally {
    await pool.deleteVolume('xattr-probe');
  }
}

function mknod(p: string, ...args: string[]): void {
  const r = spawnSync('mknod', [p, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** A small rootfs-like tree with every kind of thing a snapshot must keep. */
function writeTree(root: string, opts: { xattrs: boolean; bigMiB?: number }): void {
  const p = (rel: string) => path.join(root, rel);
  for (const d of ['etc', 'bin', 'home/u', 'var', 'run', 'dev', 'empty', 'data']) fs.mkdirSync(p(d), { recursive: true });
  fs.writeFileSync(p('etc/hostname'), 'p1\n');
  fs.linkSync(p('etc/hostname'), p('etc/hostname.link'));
  fs.symlinkSync('hostname', p('etc/alias'));
  fs.writeFileSync(p('bin/tool'), crypto.randomBytes(16 * 1024));
  fs.chmodSync(p('bin/tool'), 0o4755);
  fs.writeFileSync(p('home/u/file'), 'secret\n');
  fs.chownSync(p('home/u/file'), 1000, 1000);
  fs.chmodSync(p('home/u/file'), 0o640);
  fs.chownSync(p('home/u'), 1000, 1000);
  fs.chmodSync(p('home/u'), 0o750);
  fs.writeFileSync(p('home/u/mapped'), 'owned by a shifted id\n');
  fs.chownSync(p('home/u/mapped'), 300000, 300001); // too big for a ustar header: pax
  fs.writeFileSync(p('etc/zero-mode'), 'x');
  fs.chmodSync(p('etc/zero-mode'), 0);
  mknod(p('dev/null'), 'c', '1', '3');
  mknod(p('run/fifo'), 'p');
  const fd = fs.openSync(p('var/sparse'), 'w');
  fs.writeSync(fd, 'middle', 0, 'utf8');
  fs.writeSync(fd, 'x', 2 * MiB);
  fs.ftruncateSync(fd, 4 * MiB);
  fs.closeSync(fd);
  fs.chmodSync(p('empty'), 0o700);
  fs.writeFileSync(p(`data/${'long-name-'.repeat(12)}`), 'a name over 100 bytes\n');
  if (opts.xattrs) {
    setXattr(p('etc/hostname'), 'user.tsvz', Buffer.from([0, 1, 2, 0xff]));
    setXattr(p('home'), 'user.dir', Buffer.from('on a directory'));
    setXattr(p('bin/tool'), 'trusted.tsvz', Buffer.from('trusted'));
  }
  if (opts.bigMiB) {
    const chunk = crypto.randomBytes(MiB);
    const big = fs.openSync(p('data/big.bin'), 'w');
    for (let i = 0; i < opts.bigMiB; i++) fs.writeSync(big, chunk);
    fs.closeSync(big);
  }
  fs.utimesSync(p('etc/hostname'), 1_600_000_000.123456, 1_600_000_000.123456);
}

/** Change everything writeTree made, the way an upgrade gone wrong would. */
function mutateTree(root: string, xattrs: boolean): void {
  const p = (rel: string) => path.join(root, rel);
  fs.writeFileSync(p('etc/hostname'), 'changed\n'); // through the hardlink too
  if (xattrs) setXattr(p('etc/hostname'), 'user.tsvz', Buffer.from('other'));
  fs.chmodSync(p('bin/tool'), 0o755);
  fs.chownSync(p('etc/zero-mode'), 5, 5);
  fs.rmSync(p('home'), { recursive: true });
  fs.rmSync(p('var/sparse'));
  fs.unlinkSync(p('etc/alias'));
  fs.symlinkSync('elsewhere', p('etc/alias'));
  fs.writeFileSync(p('etc/new-file'), 'new\n');
  fs.rmSync(p('dev/null'));
}

interface EntryInfo {
  path: string;
  mode: string;
  uid: number;
  gid: number;
  mtimeMs?: number;
  size?: number;
  sha256?: string;
  /** First path of the inode, for files with several links. */
  linkOf?: string;
  target?: string;
  rdev?: number;
  xattrs?: string;
}

/** Everything a restore must bring back exactly (mtimes to the millisecond: tar carries microseconds). */
function manifest(root: string, opts: { xattrs: boolean }): EntryInfo[] {
  const out: EntryInfo[] = [];
  const firstPath = new Map<bigint, string>();
  const walk = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs, { bigint: true });
    const e: EntryInfo = { path: rel || '.', mode: st.mode.toString(8), uid: Number(st.uid), gid: Number(st.gid) };
    if (rel) e.mtimeMs = Number(st.mtimeNs / 1_000_000n);
    if (st.isFile()) {
      e.size = Number(st.size);
      e.sha256 = crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      if (st.nlink > 1n) {
        if (!firstPath.has(st.ino)) firstPath.set(st.ino, e.path);
        e.linkOf = firstPath.get(st.ino);
      }
    } else if (st.isSymbolicLink()) {
      e.target = fs.readlinkSync(abs);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      e.rdev = Number(st.rdev);
    }
    if (opts.xattrs && !st.isSymbolicLink()) {
      e.xattrs = [...(readXattrs(abs) ?? [])].map(([k, v]) => `${k}=${v.toString('hex')}`).sort().join(',');
    }
    out.push(e);
    if (st.isDirectory()) for (const child of fs.readdirSync(abs).sort()) walk(rel ? `${rel}/${child}` : child);
  };
  walk('');
  return out;
}

function assertSparse(file: string): void {
  const st = fs.statSync(file);
  assert.ok(st.blocks * 512 < st.size / 2, `${file} is sparse (${st.blocks * 512} bytes allocated of ${st.size})`);
}

/** A pass-through that counts the bytes of a stream. */
function counted(stream: Readable): { stream: Readable; bytes: () => number } {
  let n = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      cb(null, chunk);
    },
  });
  stream.on('error', (err) => t.destroy(err));
  t.on('close', () => {
    if (!stream.readableEnded) stream.destroy();
  });
  return { stream: stream.pipe(t), bytes: () => n };
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

const names = (snaps: { name: string }[]) => snaps.map((s) => s.name);

// ---------------------------------------------------------------- the table

interface Ctx {
  driver: DriverName;
  a: Pool;
  /** A second pool of the same driver (same-driver sends). */
  b: Pool;
  xattrs: boolean;
}

const CASES: { name: string; run(ctx: Ctx): Promise<void> }[] = [
  {
    name: 'snapshot, change, rollback: content, modes, owners, xattrs, hardlinks back exactly',
    async run({ a, xattrs }) {
      const dir = await a.createVolume('rb');
      assert.equal(dir, a.volumePath('rb'));
      writeTree(dir, { xattrs });
      const before = manifest(dir, { xattrs });
      const info = await a.snapshot('rb', 's1');
      assert.equal(info.name, 's1');
      assert.ok(info.createdAt && !Number.isNaN(Date.parse(info.createdAt)), 'snapshot has a creation time');
      mutateTree(dir, xattrs);
      assert.notDeepEqual(manifest(dir, { xattrs }), before);
      await a.rollback('rb', 's1');
      assert.deepEqual(manifest(a.volumePath('rb'), { xattrs }), before);
      assertSparse(path.join(a.volumePath('rb'), 'var/sparse'));
      assert.deepEqual(names(await a.listSnapshots('rb')), ['s1']);
      await a.deleteSnapshot('rb', 's1');
      assert.deepEqual(await a.listSnapshots('rb'), []);
      await a.deleteVolume('rb');
      assert.ok(!(await a.listVolumes()).includes('rb'));
    },
  },
  {
    name: 'rollback past a newer snapshot keeps it, or (zfs) refuses and changes nothing',
    async run({ a }) {
      const dir = await a.createVolume('rb2');
      fs.writeFileSync(path.join(dir, 'f'), 'one');
      await a.snapshot('rb2', 'one');
      fs.writeFileSync(path.join(dir, 'f'), 'two');
      await a.snapshot('rb2', 'two');
      fs.writeFileSync(path.join(dir, 'f'), 'three');
      if (a.driver.capabilities.rollbackToAny) {
        await a.rollback('rb2', 'one');
        assert.equal(fs.readFileSync(path.join(a.volumePath('rb2'), 'f'), 'utf8'), 'one');
        await a.rollback('rb2', 'two');
        assert.equal(fs.readFileSync(path.join(a.volumePath('rb2'), 'f'), 'utf8'), 'two');
      } else {
        await assert.rejects(a.rollback('rb2', 'one'), (err: StorageError) => err.code === 'EDEPENDENT' && /newer snapshots \(two\)/.test(err.message));
        assert.equal(fs.readFileSync(path.join(a.volumePath('rb2'), 'f'), 'utf8'), 'three');
      }
      assert.deepEqual(names(await a.listSnapshots('rb2')), ['one', 'two']);
      await a.deleteVolume('rb2');
    },
  },
  {
    name: 'bad names, missing volumes and snapshots: clear errors, nothing changed',
    async run({ a }) {
      const dir = await a.createVolume('bad');
      fs.writeFileSync(path.join(dir, 'f'), 'keep');
      await a.snapshot('bad', 'ok');
      for (const name of ['../x', 'a/b', '', 'x'.repeat(65), '-dash', 'has space', 'snapshot']) {
        await assert.rejects(a.snapshot('bad', name), InvalidArgumentError, `snapshot name ${JSON.stringify(name)}`);
      }
      await assert.rejects(a.createVolume('../escape'), InvalidArgumentError);
      await assert.rejects(a.snapshot('bad', 'ok'), AlreadyExistsError);
      await assert.rejects(a.rollback('bad', 'missing'), (err: Error) => err instanceof NotFoundError && /bad@missing not found/.test(err.message));
      await assert.rejects(a.deleteSnapshot('bad', 'missing'), NotFoundError);
      await assert.rejects(a.snapshot('nope', 's'), NotFoundError);
      await assert.rejects(a.clone('bad', 'missing', 'c'), NotFoundError);
      await assert.rejects(a.createVolume('bad'), AlreadyExistsError);
      await assert.rejects(a.send('bad', 'missing', { format: 'tar' }), NotFoundError);
      assert.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'keep');
      assert.deepEqual(names(await a.listSnapshots('bad')), ['ok']);
      assert.deepEqual((await a.listVolumes()).filter((v) => v === 'c'), []);
      await a.deleteVolume('bad');
      await assert.rejects(a.deleteVolume('bad'), NotFoundError);
    },
  },
  {
    name: 'a clone is independent of its origin (from a snapshot and from the current state)',
    async run({ a, xattrs }) {
      const dir = await a.createVolume('orig');
      writeTree(dir, { xattrs });
      const atSnap = manifest(dir, { xattrs });
      await a.snapshot('orig', 's1');
      fs.writeFileSync(path.join(dir, 'after-snap'), 'later');
      const current = manifest(dir, { xattrs });
      const c1 = await a.clone('orig', 's1', 'c1');
      const c2 = await a.clone('orig', undefined, 'c2');
      assert.deepEqual(manifest(c1, { xattrs }), atSnap);
      assert.deepEqual(manifest(c2, { xattrs }), current);
      assert.deepEqual(names(await a.listSnapshots('orig')), ['s1'], 'a clone of the current state leaves no visible snapshot');
      fs.writeFileSync(path.join(c1, 'etc/hostname'), 'clone\n');
      fs.writeFileSync(path.join(dir, 'bin/tool'), 'origin changed');
      assert.equal(fs.readFileSync(path.join(dir, 'etc/hostname'), 'utf8'), 'p1\n');
      assert.equal(fs.readFileSync(path.join(c1, 'bin/tool')).length, 16 * 1024);
      assert.equal(fs.readFileSync(path.join(c2, 'bin/tool')).length, 16 * 1024);
      assert.deepEqual(await a.listSnapshots('c1'), []);
      await a.snapshot('c1', 'own');
      assert.deepEqual(names(await a.listSnapshots('c1')), ['own']);
      for (const v of ['c1', 'c2', 'orig']) await a.deleteVolume(v);
    },
  },
  {
    name: 'a snapshot a clone depends on is protected; the origin volume can still go',
    async run({ a }) {
      const dir = await a.createVolume('base');
      fs.writeFileSync(path.join(dir, 'f'), 'base');
      await a.snapshot('base', 'gold');
      await a.snapshot('base', 'later');
      await a.clone('base', 'gold', 'child');
      await assert.rejects(a.deleteSnapshot('base', 'gold'), (err: StorageError) => {
        assert.ok(err instanceof StorageError);
        assert.equal(err.code, 'EDEPENDENT');
        assert.match(err.message, /snapshot base@gold is the origin of clone child/);
        return true;
      });
      assert.deepEqual(names(await a.listSnapshots('base')), ['gold', 'later']);
      await a.deleteSnapshot('base', 'later'); // not a clone's origin
      // Removing the origin volume keeps the clone whole (zfs promotes it).
      await a.deleteVolume('base');
      assert.deepEqual(await a.listVolumes().then((v) => v.filter((x) => x === 'base' || x === 'child')), ['child']);
      assert.equal(fs.readFileSync(path.join(a.volumePath('child'), 'f'), 'utf8'), 'base');
      assert.deepEqual(await a.listSnapshots('child'), [], 'the clone shows no snapshots it did not take');
      await a.snapshot('child', 'mine');
      await a.deleteSnapshot('child', 'mine');
      await a.deleteVolume('child');
    },
  },
  {
    name: 'send and receive within the driver: full, then incremental carrying only the change',
    async run({ a, b, xattrs }) {
      const format = negotiateFormat(a.driver.capabilities, b.driver.capabilities);
      assert.equal(format, a.driver.capabilities.sendFormats[0]);
      const dir = await a.createVolume('tx');
      writeTree(dir, { xattrs, bigMiB: 20 });
      await a.snapshot('tx', 's1');
      const full = counted(await a.send('tx', 's1', { format }));
      await b.receive('rx', 's1', { format }, full.stream);
      assert.ok(full.bytes() > 20 * MiB, `full stream ${full.bytes()} bytes`);
      assert.deepEqual(manifest(b.volumePath('rx'), { xattrs }), manifest(dir, { xattrs }));
      assert.deepEqual(names(await b.listSnapshots('rx')), ['s1']);
      await assert.rejects(b.receive('rx', 's1', { format }, await a.send('tx', 's1', { format })), AlreadyExistsError);
      if (!a.driver.capabilities.incrementalSend) {
        await assert.rejects(a.send('tx', 's1', { format, parent: 's1' }), NotSupportedError);
      } else {
        fs.writeFileSync(path.join(dir, 'etc/hostname'), 'one small change\n');
        await a.snapshot('tx', 's2');
        const inc = counted(await a.send('tx', 's2', { format, parent: 's1' }));
        await b.receive('rx', 's2', { format, parent: 's1' }, inc.stream);
        assert.ok(inc.bytes() < MiB && inc.bytes() * 20 < full.bytes(), `incremental ${inc.bytes()} bytes vs full ${full.bytes()}`);
        console.log(`# ${format} stream: full ${full.bytes()} bytes, incremental (one file changed) ${inc.bytes()} bytes`);
        assert.deepEqual(manifest(b.volumePath('rx'), { xattrs }), manifest(dir, { xattrs }));
        assert.deepEqual(names(await b.listSnapshots('rx')), ['s1', 's2']);
      }
      await b.deleteVolume('rx');
      await a.deleteVolume('tx');
    },
  },
  {
    name: 'a stream that breaks mid-way leaves no half-received volume',
    async run({ driver, a, b, xattrs }) {
      const format = negotiateFormat(a.driver.capabilities, b.driver.capabilities);
      const dir = await a.createVolume('brk');
      writeTree(dir, { xattrs, bigMiB: 2 });
      await a.snapshot('brk', 's1');
      const strays = strayNames(driver, b.record);
      const src = await a.send('brk', 's1', { format });
      const broken = new PassThrough();
      let sent = 0;
      src.on('data', (chunk: Buffer) => {
        if (sent > 256 * 1024) return;
        sent += chunk.length;
        if (sent > 256 * 1024) {
          src.destroy();
          broken.destroy(new Error('link down'));
        } else {
          broken.write(chunk);
        }
      });
      await assert.rejects(b.receive('brk', 's1', { format }, broken), /link down/);
      assert.ok(!(await b.listVolumes()).includes('brk'));
      assert.deepEqual(strayNames(driver, b.record), strays);
      // The sender is whole: a retry works.
      await b.receive('brk', 's1', { format }, await a.send('brk', 's1', { format }));
      assert.deepEqual(manifest(b.volumePath('brk'), { xattrs }), manifest(dir, { xattrs }));
      await b.deleteVolume('brk');
      await a.deleteVolume('brk');
    },
  },
  {
    name: 'formats a driver cannot speak are refused before anything is sent',
    async run({ a }) {
      const dir = await a.createVolume('fmt');
      fs.writeFileSync(path.join(dir, 'f'), 'x');
      await a.snapshot('fmt', 's1');
      await a.snapshot('fmt', 's2');
      for (const format of ['btrfs', 'zfs'] as const) {
        if (!a.driver.capabilities.sendFormats.includes(format)) await assert.rejects(a.send('fmt', 's1', { format }), NotSupportedError);
      }
      await assert.rejects(a.send('fmt', 's2', { format: 'tar', parent: 's1' }), /tar streams are always full/);
      await a.deleteVolume('fmt');
    },
  },
  {
    name: 'usage reports the pool size and what is used',
    async run({ a }) {
      const u = await a.usage();
      assert.ok(u.sizeBytes && u.sizeBytes > 0, JSON.stringify(u));
      assert.ok(u.usedBytes !== undefined && u.usedBytes >= 0 && u.usedBytes <= u.sizeBytes!);
    },
  },
];

const contexts = new Map<DriverName, Ctx>();

suites.push(() => {
  for (const driver of DRIVERS) {
    describe(`storage conformance: ${driver}`, { skip: SKIP[driver] }, () => {
      before(async () => {
        const a = await newPool(driver);
        const b = await newPool(driver);
        const xattrs = await poolHasXattrs(a);
        if (!xattrs) console.log(`# ${driver}: this filesystem has no xattr support (zfs-fuse); xattr assertions skipped`);
        contexts.set(driver, { driver, a, b, xattrs });
      });
      for (const c of CASES) {
        test(c.name, { timeout: 60_000 }, () => c.run(contexts.get(driver)!));
      }
    });
  }
});

// ---------------------------------------------------------------- across drivers

suites.push(() => describe('sends between drivers (tar fallback)', { skip: notRoot }, () => {
  const pairs: [DriverName, DriverName][] = [['btrfs', 'dir'], ['zfs', 'btrfs'], ['dir', 'zfs']];
  for (const [from, to] of pairs) {
    const skip = SKIP[from] ?? SKIP[to];
    test(`${from} -> ${to}`, { skip, timeout: 60_000 }, async () => {
      const src = contexts.get(from)?.a ?? (await newPool(from));
      const dst = contexts.get(to)?.a ?? (await newPool(to));
      const format = negotiateFormat(src.driver.capabilities, dst.driver.capabilities);
      assert.equal(format, 'tar');
      const xattrs = await poolHasXattrs(src);
      const xattrsThere = await poolHasXattrs(dst);
      const vol = `from-${from}`;
      const dir = await src.createVolume(vol);
      writeTree(dir, { xattrs });
      await src.snapshot(vol, 's1');
      if (xattrs && !xattrsThere) {
        // The tree has xattrs the target can't hold: refused, nothing half-received.
        await assert.rejects(dst.receive(vol, 's1', { format }, await src.send(vol, 's1', { format })), (err: Error) => {
          assert.ok(err instanceof NotSupportedError, String(err)); // ENOTSUP: the target filesystem lacks xattrs
          assert.match(err.message, /does not support extended attribute/);
          return true;
        });
        assert.ok(!(await dst.listVolumes()).includes(vol));
      } else {
        await dst.receive(vol, 's1', { format }, await src.send(vol, 's1', { format }));
        const both = xattrs && xattrsThere;
        assert.deepEqual(manifest(dst.volumePath(vol), { xattrs: both }), manifest(dir, { xattrs: both }));
        assertSparse(path.join(dst.volumePath(vol), 'var/sparse'));
        assert.deepEqual(names(await dst.listSnapshots(vol)), ['s1']);
        await dst.deleteVolume(vol);
      }
      await src.deleteVolume(vol);
    });
  }
}));

// ---------------------------------------------------------------- sources and reboots

suites.push(() => describe('pools on an existing --source, and reopened after a reboot', { skip: notRoot }, () => {
  test('btrfs: an empty directory on a mounted btrfs', { skip: SKIP.btrfs, timeout: 60_000 }, async () => {
    const host = contexts.get('btrfs')!.a;
    const source = path.join(host.record.mountpoint as string, 'adopted');
    fs.mkdirSync(source);
    await sourceCycle(await newPool('btrfs', undefined, { size: undefined, source }));
    assert.deepEqual(fs.readdirSync(source), [], 'destroy leaves the source, empty');
    fs.rmdirSync(source);
  });

  test('zfs: an existing dataset', { skip: SKIP.zfs, timeout: 60_000 }, async () => {
    const base = contexts.get('zfs')!.a.record.dataset as string;
    const source = `${base}/adopted`;
    assert.equal(spawnSync('zfs', ['create', source]).status, 0);
    const pool = await newPool('zfs', undefined, { size: undefined, source });
    await assert.rejects(newPool('zfs', undefined, { size: undefined, source }), /already holds a tsvz pool/);
    await sourceCycle(pool);
    const left = spawnSync('zfs', ['list', '-H', '-o', 'name', '-r', source], { encoding: 'utf8' }).stdout.trim();
    assert.equal(left, source, 'destroy leaves the source dataset, without children');
    assert.equal(spawnSync('zfs', ['destroy', source]).status, 0);
  });

  test('btrfs: loop detached and unmounted (a reboot), then opened again', { skip: SKIP.btrfs, timeout: 60_000 }, async () => {
    const pool = await newPool('btrfs', 128 * MiB);
    fs.writeFileSync(path.join(await pool.createVolume('v'), 'f'), 'survives');
    await pool.snapshot('v', 's');
    const rec = pool.record;
    assert.equal(spawnSync('umount', [rec.mountpoint as string]).status, 0);
    for (const line of spawnSync('losetup', ['-j', rec.image as string], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
      spawnSync('losetup', ['-d', line.split(':')[0]]);
    }
    const again = await openPool(rec);
    assert.equal(fs.readFileSync(path.join(again.volumePath('v'), 'f'), 'utf8'), 'survives');
    assert.deepEqual(names(await again.listSnapshots('v')), ['s']);
    await destroyPool(rec, { force: true });
    assert.equal(spawnSync('losetup', ['-j', rec.image as string], { encoding: 'utf8' }).stdout, '');
  });

  test('zfs: pool exported (a reboot), then opened again', { skip: SKIP.zfs, timeout: 60_000 }, async () => {
    const pool = await newPool('zfs', 64 * MiB);
    fs.writeFileSync(path.join(await pool.createVolume('v'), 'f'), 'survives');
    await pool.snapshot('v', 's');
    assert.equal(spawnSync('zpool', ['export', pool.record.zpool as string]).status, 0);
    const again = await openPool(pool.record);
    assert.equal(fs.readFileSync(path.join(again.volumePath('v'), 'f'), 'utf8'), 'survives');
    assert.deepEqual(names(await again.listSnapshots('v')), ['s']);
    await destroyPool(pool.record, { force: true });
  });
}));

/** A short life on an adopted source: volumes, a protected snapshot, promote-on-delete, destroy. */
async function sourceCycle(pool: Pool): Promise<void> {
  const dir = await pool.createVolume('v');
  fs.writeFileSync(path.join(dir, 'f'), 'on a source');
  await pool.snapshot('v', 's');
  await pool.clone('v', 's', 'c');
  await assert.rejects(pool.deleteSnapshot('v', 's'), /origin of clone c/);
  await pool.deleteVolume('v');
  assert.equal(fs.readFileSync(path.join(pool.volumePath('c'), 'f'), 'utf8'), 'on a source');
  await assert.rejects(destroyPool(pool.record), /still has volumes: c/);
  await destroyPool(pool.record, { force: true });
}

// ---------------------------------------------------------------- a full pool

/** Write until the filesystem says ENOSPC: big files first, then small ones for the metadata. */
function fillUp(dir: string): void {
  fs.mkdirSync(path.join(dir, 'filler'));
  const chunk = crypto.randomBytes(MiB);
  try {
    for (let i = 0; ; i++) fs.writeFileSync(path.join(dir, 'filler', `big${i}`), chunk);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
  }
  try {
    for (let i = 0; i < 100_000; i++) fs.writeFileSync(path.join(dir, 'filler', `small${i}`), 'x'.repeat(100));
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
  }
}

/**
 * Delete what fillUp wrote. A 100% full zfs-fuse can't unlink (copy-on-write
 * needs room) but can truncate; a full btrfs is the other way round.
 */
function freeUp(dir: string): void {
  for (const f of fs.readdirSync(dir)) {
    try {
      fs.truncateSync(path.join(dir, f), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    }
  }
  fs.rmSync(dir, { recursive: true });
}

/** Names the storage holds that a failed operation could have left behind (staging copies, datasets). */
function strayNames(driver: DriverName, rec: PoolRecord): string[] {
  if (driver === 'zfs') {
    const base = rec.dataset as string;
    const out = spawnSync('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', base], { encoding: 'utf8' }).stdout;
    return out.split('\n').filter(Boolean).filter((n) => ![base, `${base}/volumes`, `${base}/tmp`].includes(n));
  }
  if (driver === 'lvm') {
    // LVs that are neither volumes, snapshots nor the pool (rollback temporaries), and leftovers in the mountpoint dirs.
    const out = spawnSync('lvs', ['--noheadings', '-o', 'lv_name', rec.vg as string], { encoding: 'utf8' }).stdout ?? '';
    const lvs = out.split('\n').map((l) => l.trim()).filter((n) => n && n !== rec.thinpool && !/^[vs]\+/.test(n));
    const dir = rec.dir as string;
    const hiddenVolumes = fs.readdirSync(path.join(dir, 'volumes')).filter((e) => e.startsWith('.')).map((e) => path.join(dir, 'volumes', e));
    return [...lvs, ...hiddenVolumes, ...fs.readdirSync(path.join(dir, 'tmp')).map((e) => path.join(dir, 'tmp', e))];
  }
  if (driver === 'default') {
    // Staging and trash live in each container's directory and its snapshots directory.
    const top = rec.path as string;
    const hidden = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).filter((e) => e.startsWith('.')).map((e) => path.join(d, e)) : []);
    return fs.readdirSync(top).flatMap((c) => [...hidden(path.join(top, c)), ...hidden(path.join(top, c, 'snapshots'))]);
  }
  const top = driver === 'dir' ? (rec.path as string) : (rec.mountpoint as string);
  const hidden: string[] = [];
  const walk = (d: string, depth: number) => {
    for (const e of fs.readdirSync(d)) {
      if (e.startsWith('.')) hidden.push(path.join(d, e));
      else if (depth > 0 && fs.lstatSync(path.join(d, e)).isDirectory()) walk(path.join(d, e), depth - 1);
    }
  };
  walk(path.join(top, 'volumes'), 0);
  walk(path.join(top, 'snapshots'), 1);
  if (driver === 'dir') walk(path.join(top, '.trash'), 0);
  return hidden;
}

suites.push(() => describe('a pool that fills up: a clear error, the volume and its snapshots intact', { skip: notRoot }, () => {
  const cases: { driver: DriverName; make: () => Promise<Pool> }[] = [
    { driver: 'btrfs', make: () => newPool('btrfs', 128 * MiB) },
    { driver: 'zfs', make: () => newPool('zfs', 64 * MiB) },
    {
      driver: 'dir',
      make: async () => {
        const src = path.join(ROOT, 'small-tmpfs');
        fs.mkdirSync(src);
        const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', `${TAG}-tmpfs`, src], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        return newPool('dir', undefined, { source: src });
      },
    },
  ];
  for (const { driver, make } of cases) {
    test(driver, { skip: SKIP[driver], timeout: 60_000 }, async () => {
      const pool = await make();
      const dir = await pool.createVolume('v');
      const xattrs = xattrsWork(dir);
      writeTree(dir, { xattrs });
      const before = manifest(dir, { xattrs });
      await pool.snapshot('v', 's0');
      fillUp(dir);
      const snap = await settle(pool.snapshot('v', 's1'));
      const clone = await settle(pool.clone('v', 's0', 'c'));
      for (const r of [snap, clone]) {
        if (r.ok) continue; // CoW filesystems may still have room for metadata; either way nothing may dangle
        assert.ok(r.error instanceof StorageError, String(r.error));
        assert.equal(r.error.code, 'ENOSPC', r.error.message);
        assert.match(r.error.message, /pool .* is full/);
      }
      assert.ok(!snap.ok || !clone.ok, 'a full pool refused at least one of snapshot and clone');
      assert.deepEqual(names(await pool.listSnapshots('v')), snap.ok ? ['s0', 's1'] : ['s0']);
      assert.deepEqual(await pool.listVolumes(), clone.ok ? ['c', 'v'] : ['v']);
      const kept = driver === 'zfs' ? [`${pool.record.dataset}/volumes/v`, `${pool.record.dataset}/volumes/v@s0`] : [];
      const made = driver !== 'zfs' ? [] : [...(snap.ok ? [`${pool.record.dataset}/volumes/v@s1`] : []), ...(clone.ok ? [`${pool.record.dataset}/volumes/c`] : [])];
      assert.deepEqual(strayNames(driver, pool.record).sort(), [...kept, ...made].sort());
      if (clone.ok) await pool.deleteVolume('c');
      if (snap.ok) await pool.deleteSnapshot('v', 's1');
      // A rollback that can't get the room it needs leaves the volume as it was.
      const rollback = await settle(pool.rollback('v', 's0'));
      if (!rollback.ok) {
        assert.ok(rollback.error instanceof StorageError && rollback.error.code === 'ENOSPC', String(rollback.error));
        assert.ok(fs.existsSync(path.join(pool.volumePath('v'), 'filler')), 'the volume is untouched');
        assert.deepEqual(strayNames(driver, pool.record).sort(), kept.sort());
        // Free the space: the snapshot taken before the pool filled brings everything back.
        // zfs frees a deleted file's blocks a transaction group later: the room comes within seconds.
        freeUp(path.join(dir, 'filler'));
        for (let tries = 0; ; tries++) {
          const again = await settle(pool.rollback('v', 's0'));
          if (again.ok) break;
          if (tries >= 50 || !(again.error instanceof StorageError && again.error.code === 'ENOSPC')) throw again.error;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      assert.deepEqual(manifest(pool.volumePath('v'), { xattrs }), before);
      await pool.deleteVolume('v');
    });
  }
}));

// ---------------------------------------------------------------- bad input

suites.push(() => describe('pool create: bad input is refused clearly and leaves nothing', { skip: notRoot }, () => {
  const poolsDir = path.join(ROOT, 'pools');
  const listing = () => (fs.existsSync(poolsDir) ? fs.readdirSync(poolsDir).sort() : []);
  const spec = (extra: Partial<PoolSpec> & { driver: string }): PoolSpec => ({ name: `${TAG}-bad`, rootDir: ROOT, ...extra });

  test('unknown driver', async () => {
    const before = listing();
    assert.throws(() => getDriver('nope'), { message: 'unknown storage driver "nope" (dir, btrfs, zfs, lvm)' });
    await assert.rejects(createPool(spec({ driver: 'nope' })), InvalidArgumentError);
    assert.deepEqual(listing(), before);
  });

  test('size 0, negative, fractional or too small', { skip: SKIP.btrfs ?? SKIP.zfs }, async () => {
    const before = listing();
    for (const driver of ['btrfs', 'zfs']) {
      for (const size of [0, -1, 1.5]) await assert.rejects(createPool(spec({ driver, size })), /pool size must be greater than zero/);
      await assert.rejects(createPool(spec({ driver, size: 1024 })), /too small/);
      await assert.rejects(createPool(spec({ driver })), /needs --s/);
    }
    await assert.rejects(createPool(spec({ driver: 'dir', size: 64 * MiB })), /a dir pool has no size/);
    assert.deepEqual(listing(), before);
  });

  test('a source that does not exist', { skip: SKIP.btrfs ?? SKIP.zfs }, async () => {
    const before = listing();
    for (const driver of ['dir', 'btrfs']) {
      await assert.rejects(createPool(spec({ driver, source: path.join(ROOT, 'no-such-dir') })), (err: Error) => err instanceof NotFoundError && /does not exist/.test(err.message));
    }
    await assert.rejects(createPool(spec({ driver: 'zfs', source: `${TAG}-nopool/tsvz` })), (err: Error) => err instanceof NotFoundError && /dataset .* does not exist/.test(err.message));
    assert.deepEqual(listing(), before);
  });

  test('a source of the wrong kind', { skip: SKIP.btrfs ?? SKIP.zfs }, async () => {
    const before = listing();
    const file = path.join(ROOT, 'a-file');
    fs.writeFileSync(file, 'x');
    const ext4Dir = fs.mkdtempSync(path.join(ROOT, 'plain-'));
    const full = fs.mkdtempSync(path.join(ROOT, 'full-'));
    fs.writeFileSync(path.join(full, 'someone-elses'), 'x');
    await assert.rejects(createPool(spec({ driver: 'btrfs', source: file })), /is not a directory/);
    await assert.rejects(createPool(spec({ driver: 'btrfs', source: ext4Dir })), /is not on a btrfs filesystem/);
    await assert.rejects(createPool(spec({ driver: 'dir', source: full })), /is not empty/);
    await assert.rejects(createPool(spec({ driver: 'zfs', source: ext4Dir })), /is a path/);
    await assert.rejects(createPool(spec({ driver: 'btrfs', size: 64 * MiB, source: ext4Dir })), /either --source or --size/);
    assert.deepEqual(fs.readdirSync(ext4Dir), []);
    assert.deepEqual(fs.readdirSync(full), ['someone-elses']);
    assert.deepEqual(listing(), before);
  });

  test('a pool name that is taken, or invalid', async () => {
    const rec = await createPool({ name: `${TAG}-taken`, driver: 'dir', rootDir: ROOT });
    records.push(rec);
    const before = listing();
    await assert.rejects(createPool({ name: `${TAG}-taken`, driver: 'dir', rootDir: ROOT }), AlreadyExistsError);
    await assert.rejects(createPool({ name: '../escape', driver: 'dir', rootDir: ROOT }), InvalidArgumentError);
    assert.deepEqual(listing(), before);
  });

  test('a pool with volumes is not destroyed unless forced', async () => {
    const pool = await newPool('dir');
    await pool.createVolume('v');
    await assert.rejects(destroyPool(pool.record), (err: StorageError) => err.code === 'ENOTEMPTY' && /still has volumes: v/.test(err.message));
    await destroyPool(pool.record, { force: true });
    assert.ok(!fs.existsSync(pool.record.path as string));
  });

  test('a driver whose kernel support is missing is refused, saying what is missing', { skip: SKIP.lvm ? undefined : 'lvm works on this host' }, async () => {
    await assert.rejects(createPool(spec({ driver: 'lvm', size: 256 * MiB })), (err: Error) => {
      assert.ok(err instanceof NotSupportedError);
      assert.match(err.message, /storage driver lvm cannot be used on this host: .*no device-mapper on this kernel/);
      return true;
    });
    assert.ok(!fs.existsSync(path.join(poolsDir, `${TAG}-bad`)));
  });
}));

// ---------------------------------------------------------------- clean-up

suites.push(() => after(async () => {
  const problems: string[] = [];
  for (const rec of records.reverse()) {
    try {
      const home = (rec.dir ?? rec.path ?? rec.mountpoint) as string;
      if (fs.existsSync(home)) await destroyPool(rec, { force: true });
    } catch (err) {
      problems.push(`destroy ${rec.name}: ${(err as Error).message}`);
    }
  }
  // Whatever a failed test left: zpools, VGs, mounts, loop devices named after this run.
  const zpools = spawnSync('zpool', ['list', '-H', '-o', 'name'], { encoding: 'utf8' }).stdout?.split('\n').filter((n) => n.startsWith(TAG)) ?? [];
  for (const z of zpools) spawnSync('zpool', ['destroy', '-f', z]);
  const vgs = spawnSync('vgs', ['--noheadings', '-o', 'vg_name'], { encoding: 'utf8' }).stdout?.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(TAG)) ?? [];
  for (const vg of vgs) spawnSync('vgremove', ['-f', vg]);
  for (const m of mountsUnder(fs.realpathSync(ROOT))) spawnSync('umount', ['-l', m]);
  const loops = (spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((l) => l.includes(ROOT));
  for (const l of loops) spawnSync('losetup', ['-d', l.split(':')[0]]);
  fs.rmSync(ROOT, { recursive: true, force: true });
  if (zpools.length || vgs.length || loops.length) problems.push(`left behind: ${[...zpools, ...vgs, ...loops].join(', ')}`);
  const mounts = (spawnSync('mount', [], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((l) => l.includes(TAG));
  if (mounts.length) problems.push(`mounts left: ${mounts.join('; ')}`);
  assert.deepEqual(problems, []);
}));

// The suites are declared once every driver has said what it misses (its probes run tools).
void (async () => {
  for (const d of DRIVERS) {
    SKIP[d] = await skipReason(d);
    if (SKIP[d]) console.log(`# skipped ${d} storage tests: ${SKIP[d]}`);
  }
  for (const declare of suites) declare();
})();
