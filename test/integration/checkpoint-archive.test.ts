import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventually, leftoverCgroups, rootSkipReason, TestRoot } from '../helpers/cli';
import { installMemhog, readHex } from '../helpers/memhog';
import { hostKeyOf, readTar, resign, writeTar } from '../helpers/archive';

const skip = rootSkipReason()
  ?? (spawnSync('cc', ['--version']).status !== 0 ? 'no C compiler for the memhog fixture' : undefined)
  ?? (spawnSync('zstd', ['--version']).status !== 0 ? 'no zstd' : undefined);
if (skip) console.log(`# skipped checkpoint archive tests: ${skip}`);

const MIB = 1024 * 1024;

describe('checkpoint export, import and inspect (real CRIU)', { skip }, () => {
  const t = new TestRoot();
  const archives = path.join(t.dir, 'archives');
  const rootfs = (name: string) => path.join(t.dir, 'containers', name, 'rootfs');
  const count = (name: string) => parseInt(readHex(path.join(rootfs(name), 'memhog.count')) ?? '-1', 16);
  /** No container directory (finished or half-made) and no scratch directory left by an import. */
  const nothingFor = (name: string) => {
    assert.ok(!fs.readdirSync(path.join(t.dir, 'containers')).some((e) => e === name || e.startsWith(`.creating-${name}-`)), `no ${name}`);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'cache')).filter((e) => e.startsWith('.import-')), [], 'no scratch left');
  };
  let id = '';
  let atDump = 0;

  before(async () => {
    fs.mkdirSync(archives, { recursive: true });
    t.ok(['create', 'p1', '--init', '/usr/bin/memhog 64']);
    installMemhog(rootfs('p1'));
    t.ok(['start', 'p1']);
    assert.ok(await eventually(() => count('p1') >= 5, 20_000), 'memhog is counting');
    id = t.ok(['checkpoint', 'p1', '--name', 'cp1']).trim();
    atDump = count('p1');
    t.ok(['checkpoint', 'export', 'p1', id, path.join(archives, 'p1.tar')]);
  });
  after(() => {
    const key = t.dir;
    t.cleanup();
    assert.deepEqual(leftoverCgroups(key), []);
  });

  test('list shows CRIU statistics: frozen time and memory written', () => {
    const [m] = JSON.parse(t.ok(['checkpoint', 'list', 'p1', '--json']));
    assert.equal(m.id, 'cp1');
    assert.ok(m.frozenMs > 0, `frozenMs ${m.frozenMs}`);
    assert.ok(m.memwriteMs > 0 && m.memdumpMs > 0);
    assert.ok(m.pagesWritten * 4096 >= 64 * MIB, `pagesWritten ${m.pagesWritten}`);
    const text = t.ok(['checkpoint', 'list', 'p1']);
    assert.match(text, /MEMORY WRITTEN\s+FROZEN MS/);
    assert.match(text, /cp1 .* 6\d\.\d MiB/);
  });

  test('the archive holds the images, the config and the manifest; not the host-local record and dump log', async () => {
    const names = (await readTar(path.join(archives, 'p1.tar'))).map((i) => i.header.name);
    assert.equal(names[0], 'manifest.json');
    assert.ok(names.includes('config.json') && names.includes('images/inventory.img') && names.includes('images/stats-dump'), names.join(' '));
    assert.ok(fs.existsSync(path.join(t.dir, 'containers', 'p1', 'checkpoints', 'cp1', 'dump.log')));
    assert.deepEqual(names.filter((n) => /dump\.log|checkpoint\.json|\.tmp$/.test(n)), []);
  });

  test('inspect shows the memhog process, its memory and its console', () => {
    const r = JSON.parse(t.ok(['checkpoint', 'inspect', 'p1', id, '--json']));
    assert.equal(r.checkpoint.id, 'cp1');
    assert.equal(r.processes.length, 1);
    const [p] = r.processes;
    assert.deepEqual([p.pid, p.ppid, p.comm, p.state, p.threads], [1, 0, 'memhog', 'alive', 1]);
    assert.ok(p.dumpedBytes >= 64 * MIB && p.vmaBytes >= p.dumpedBytes, JSON.stringify(p));
    assert.ok(r.memory.bytesWritten >= 64 * MIB && r.memory.vmas === p.vmas);
    const stdio = r.files.filter((f: any) => f.pid === 1 && f.fd <= 2);
    assert.equal(stdio.length, 3);
    for (const f of stdio) assert.deepEqual([f.type, /^\/dev\/pts\/\d+$/.test(f.path)], ['tty', true], JSON.stringify(f));
    assert.deepEqual(r.sockets, []);
    const text = t.ok(['checkpoint', 'inspect', 'p1']);
    assert.match(text, /^1\s+0\s+1\s+memhog\s+alive/m);
    assert.match(text, /^1\s+0\s+tty\s+\/dev\/pts\/\d+$/m);
  });

  test('export, then restore under another name: the counter continues in p2', async () => {
    const sum = readHex(path.join(rootfs('p1'), 'memhog.sum'));
    // The archive carries no files: p2 gets the same rootfs contents (memhog) first.
    t.ok(['create', 'p2', '--init', '/usr/bin/memhog 64']);
    installMemhog(rootfs('p2'));
    assert.match(t.ok(['restore', 'p2', '--import', path.join(archives, 'p1.tar')]), /restored p2 from p1's checkpoint cp1/);
    const info = t.info('p2');
    assert.equal(info.state, 'running');
    assert.ok(info.cgroup.memoryBytes >= 64 * MIB, 'in p2\'s own cgroups');
    assert.ok(await eventually(() => count('p2') > atDump, 10_000), 'p2 counts on from where p1 was dumped');
    fs.writeFileSync(path.join(rootfs('p2'), 'memhog.ask'), '');
    assert.ok(await eventually(() => readHex(path.join(rootfs('p2'), 'memhog.now')) !== undefined, 10_000));
    assert.equal(readHex(path.join(rootfs('p2'), 'memhog.now')), sum, 'the memory came across bit-identical');
    const [m] = JSON.parse(t.ok(['checkpoint', 'list', 'p2', '--json']));
    assert.equal(m.container, 'p1');
    assert.equal(m.importedFrom.archive, path.join(archives, 'p1.tar'));
    assert.equal(t.info('p1').state, 'stopped', 'the source is untouched');
    assert.equal(count('p1'), atDump);
    t.ok(['stop', 'p2', '--timeout', '1']);
    // The restore's statistics stay with the images, on this host only.
    assert.ok(fs.existsSync(path.join(t.dir, 'containers', 'p2', 'checkpoints', 'cp1', 'stats-restore')));
    t.ok(['checkpoint', 'export', 'p2', 'cp1', path.join(archives, 'p2.tar')]);
    const names = (await readTar(path.join(archives, 'p2.tar'))).map((i) => i.header.name);
    assert.ok(names.includes('images/stats-dump') && !names.includes('images/stats-restore'), names.join(' '));
  });

  test('a busybox system container moves to a new name through .tar.zst; the source is gone', async () => {
    t.ok(['create', 'sys1', '--memory', '128M']);
    t.ok(['start', 'sys1']);
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'echo kept-in-tmpfs > /tmp/note']);
    // A listening socket, in its own session (CRIU needs the session leader inside).
    t.ok(['exec', 'sys1', '--', 'sh', '-c', 'setsid nc -l -p 7777 </dev/null >/dev/null 2>&1 &']);
    assert.ok(await eventually(() => /:7777\s.*LISTEN/.test(t.ok(['exec', 'sys1', '--', 'netstat', '-tln']))), 'nc listens');
    const cp = t.ok(['checkpoint', 'sys1']).trim();
    const r = JSON.parse(t.ok(['checkpoint', 'inspect', 'sys1', cp, '--json']));
    const nc = r.processes.find((p: any) => p.comm === 'nc');
    assert.ok(nc, JSON.stringify(r.processes));
    assert.deepEqual(r.sockets.map((k: any) => [k.pid, k.proto, k.state, k.srcPort]), [[nc.pid, 'tcp', 'LISTEN', 7777]]);
    assert.ok(r.files.some((f: any) => f.pid === nc.pid && f.type === 'inetsk'));
    assert.match(t.ok(['checkpoint', 'inspect', 'sys1', cp]), /tcp6?\s+LISTEN\s+\S+:7777/);
    const file = path.join(archives, 'sys1.tar.zst');
    t.ok(['checkpoint', 'export', 'sys1', cp, file]);
    assert.deepEqual(fs.readFileSync(file).subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd');
    t.ok(['destroy', 'sys1']);
    t.ok(['restore', 'sys2', '--import', file]);
    const info = t.info('sys2');
    assert.equal(info.state, 'running');
    assert.equal(info.config.name, 'sys2');
    assert.equal(info.config.hostname, 'sys1', 'hostname kept');
    assert.equal(info.config.limits.memoryBytes, 128 * MIB, 'limits kept');
    assert.equal(t.ok(['exec', 'sys2', '--', 'cat', '/tmp/note']).trim(), 'kept-in-tmpfs');
    assert.equal(t.ok(['exec', 'sys2', '--', 'cat', '/proc/1/comm']).trim(), 'init');
    assert.match(t.ok(['exec', 'sys2', '--', 'netstat', '-tln']), /:7777\s.*LISTEN/, 'the socket came across');
    // A new checkpoint of sys2 is an ordinary one.
    t.ok(['checkpoint', 'sys2', '--name', 'own']);
    t.ok(['restore', 'sys2']);
    t.ok(['stop', 'sys2', '--timeout', '5']);
  });

  test('CRIU fails on a new container lacking the files: it stays with the checkpoint, restorable once fixed', () => {
    // p4 is made from p1's template (busybox), which has no /usr/bin/memhog.
    const r = t.run(['restore', 'p4', '--import', path.join(archives, 'p1.tar')]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /criu restore failed: .*memhog.*the imported checkpoint cp1 stays in p4: retry with `tsvz restore p4`, or remove it with `tsvz destroy p4`/);
    assert.equal(t.info('p4').state, 'created');
    assert.deepEqual(t.info('p4').config.init, ['/usr/bin/memhog', '64']);
    installMemhog(rootfs('p4'));
    t.ok(['restore', 'p4']);
    assert.equal(t.info('p4').state, 'running');
    t.ok(['destroy', '--force', 'p4']);
  });

  test('a tampered archive is refused before CRIU runs; nothing is created', async () => {
    const items = await readTar(path.join(archives, 'p1.tar'));
    const pages = items.find((i) => /^images\/pages-\d+\.img$/.test(i.header.name))!;
    pages.data[12345] ^= 0x40;
    const file = path.join(archives, 'tampered.tar');
    await writeTar(file, items);
    const r = t.run(['restore', 'p3', '--import', file]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr, `tsvz: archive ${file} is tampered: ${pages.header.name} checksum mismatch\n`);
    nothingFor('p3');
    // Into an existing, stopped container: refused too, its catalog untouched.
    const before = t.ok(['checkpoint', 'list', 'sys2', '--json']);
    assert.match(t.run(['restore', 'sys2', '--import', file]).stderr, /is tampered/);
    assert.equal(t.ok(['checkpoint', 'list', 'sys2', '--json']), before);
    assert.equal(t.info('sys2').state, 'stopped');
  });

  test('a truncated archive is refused; nothing is created', () => {
    const buf = fs.readFileSync(path.join(archives, 'p1.tar'));
    const file = path.join(archives, 'truncated.tar');
    fs.writeFileSync(file, buf.subarray(0, Math.floor(buf.length * 0.6)));
    assert.equal(t.run(['restore', 'p3', '--import', file]).stderr, `tsvz: archive ${file} is truncated\n`);
    nothingFor('p3');
    const zst = path.join(archives, 'truncated.tar.zst');
    const full = fs.readFileSync(path.join(archives, 'sys1.tar.zst'));
    fs.writeFileSync(zst, full.subarray(0, full.length - 100));
    assert.equal(t.run(['restore', 'p3', '--import', zst]).stderr, `tsvz: archive ${zst} is truncated\n`);
    nothingFor('p3');
  });

  test('an archive with a ../evil entry is refused; nothing is written outside', async () => {
    const items = await readTar(path.join(archives, 'p1.tar'));
    const file = path.join(archives, 'evil.tar');
    await writeTar(file, [items[0], items[1], { header: { name: '../evil' }, data: Buffer.from('pwned') }, ...items.slice(2)]);
    assert.equal(t.run(['restore', 'p3', '--import', file]).stderr, `tsvz: archive ${file} has an unsafe entry ../evil\n`);
    nothingFor('p3');
    for (const dir of [t.dir, path.join(t.dir, 'cache'), path.join(t.dir, 'containers')]) assert.ok(!fs.existsSync(path.join(dir, 'evil')));
  });

  test('a checkpoint made by a newer CRIU is refused', async () => {
    const items = await readTar(path.join(archives, 'p1.tar'));
    const manifest = JSON.parse(items[0].data.toString());
    manifest.checkpoint.criuVersion = '99.0.0';
    items[0].data = Buffer.from(JSON.stringify(manifest));
    resign(items, hostKeyOf(t.dir)); // a real archive from a host with that CRIU: signed
    const file = path.join(archives, 'future.tar');
    await writeTar(file, items);
    assert.match(t.run(['restore', 'p3', '--import', file]).stderr, /made by CRIU 99\.0\.0, newer than this host's/);
    nothingFor('p3');
  });

  test('refusals: another container\'s checkpoint without --import, a running target, an id clash', () => {
    // p1's checkpoint copied by hand into p2's catalog is still refused: only --import may rename.
    const src = path.join(t.dir, 'containers', 'p1', 'checkpoints', 'cp1');
    const dst = path.join(t.dir, 'containers', 'p2', 'checkpoints', 'copied');
    fs.cpSync(src, dst, { recursive: true });
    const meta = JSON.parse(fs.readFileSync(path.join(dst, 'checkpoint.json'), 'utf8'));
    fs.writeFileSync(path.join(dst, 'checkpoint.json'), JSON.stringify({ ...meta, id: 'copied' }));
    assert.match(t.run(['restore', 'p2', 'copied']).stderr, /checkpoint copied belongs to container p1, not p2/);
    fs.rmSync(dst, { recursive: true });
    // p2 already holds cp1 (imported above).
    assert.match(t.run(['restore', 'p2', '--import', path.join(archives, 'p1.tar')]).stderr, /container p2 already has a checkpoint "cp1"/);
    t.ok(['start', 'sys2']);
    assert.match(t.run(['restore', 'sys2', '--import', path.join(archives, 'p1.tar')]).stderr, /container sys2 is running/);
    assert.match(t.run(['restore', 'p3', '--import', path.join(archives, 'nope.tar')]).stderr, /archive .*nope\.tar not found/);
    nothingFor('p3');
  });
});
