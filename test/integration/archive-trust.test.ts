import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as protobuf from 'protobufjs';
import { rootSkipReason, TestRoot } from '../helpers/cli';
import { hostKeyOf, Item, readTar, replaceFile, resign, strangerKey, writeTar } from '../helpers/archive';

const skip = rootSkipReason();
if (skip) console.log(`# skipped archive trust tests: ${skip}`);

/** CRIU's cpuinfo image entries, field numbers as in CRIU's images/cpuinfo.proto. */
const CPUINFO = protobuf.parse(`
  syntax = "proto2";
  message cpuinfo_x86_entry {
    required uint32 vendor_id = 1; required uint32 cpu_family = 2; required uint32 model = 3; required uint32 stepping = 4;
    required uint32 capability_ver = 5; repeated uint32 capability = 6; optional string model_id = 7;
    optional uint64 xfeatures_mask = 8; optional uint32 xsave_size = 9; optional uint32 xsave_size_max = 10;
  }
  message cpuinfo_entry { repeated cpuinfo_x86_entry x86_entry = 1; }
`).root.lookupType('cpuinfo_entry');

/** The cpuinfo image of a CPU with every instruction and every xsave feature: one no host has. */
function impossibleCpu(image: Buffer): Buffer {
  // An image: 8 bytes of magic, then entries as a 32-bit length and a message.
  const len = image.readUInt32LE(8);
  const entry = CPUINFO.toObject(CPUINFO.decode(image.subarray(12, 12 + len))) as { x86Entry: { capability: number[]; xfeaturesMask?: number }[] };
  for (const x of entry.x86Entry) {
    x.capability = x.capability.map(() => 0xffffffff);
    x.xfeaturesMask = 0xffffffff;
  }
  const body = Buffer.from(CPUINFO.encode(CPUINFO.fromObject(entry)).finish());
  const head = Buffer.alloc(12);
  image.copy(head, 0, 0, 8);
  head.writeUInt32LE(body.length, 8);
  return Buffer.concat([head, body]);
}

describe('checkpoint archives: only what a trusted host signed, every field hostile', { skip }, () => {
  const t = new TestRoot();
  const archives = path.join(t.dir, 'archives');
  const good = path.join(archives, 'good.tar');
  const nothingFor = (name: string) => {
    assert.ok(!fs.readdirSync(path.join(t.dir, 'containers')).some((e) => e === name || e.startsWith(`.creating-${name}-`)), `no ${name}`);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'cache')).filter((e) => e.startsWith('.import-')), [], 'no scratch left');
  };
  const refused = async (label: string, edit: (items: Item[]) => void, expect: RegExp, extra: string[] = []) => {
    const items = await readTar(good);
    edit(items);
    const file = path.join(archives, `${label}.tar`);
    await writeTar(file, items);
    const r = t.run(['restore', 'imp', '--import', file, ...extra]);
    assert.notEqual(r.status, 0, `${label} was accepted`);
    assert.match(r.stderr, expect);
    assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, 'one line');
    nothingFor('imp');
  };

  before(() => {
    fs.mkdirSync(archives, { recursive: true });
    t.ok(['create', 'src']);
    t.ok(['start', 'src']);
    t.ok(['checkpoint', 'src', '--name', 'c1']);
    t.ok(['checkpoint', 'export', 'src', 'c1', good]);
  });
  after(() => t.cleanup());

  test('an export is signed by this host and carries its CPU; its own import is accepted', async () => {
    const names = (await readTar(good)).map((i) => i.header.name);
    assert.deepEqual(names.slice(0, 3), ['manifest.json', 'manifest.sig', 'config.json']);
    assert.ok(names.includes('images/cpuinfo.img'));
    assert.match(t.ok(['restore', 'imp', '--import', good]), /restored imp from src's checkpoint c1 \(signed by .*this host\)/);
    t.ok(['destroy', '--force', 'imp']);
  });

  test('a manifest re-hashed after an edit (the signature no longer matches) is refused', async () => {
    await refused('rehashed', (items) => {
      const core = items.find((i) => /^images\/core-\d+\.img$/.test(i.header.name))!;
      const data = Buffer.from(core.data);
      data[data.length - 1] ^= 1;
      replaceFile(items, core.header.name, data);
    }, /^tsvz: archive .* is tampered: its manifest does not match its signature/);
  });

  test('an archive signed by a host this one does not trust is refused', async () => {
    await refused('stranger', (items) => resign(items, strangerKey(), 'evil-host'), /is signed by a host this one does not trust \("evil-host"\)/);
  });

  test('an unsigned archive is refused, and with --trust-unsigned accepted with a warning', async () => {
    await refused('unsigned', (items) => { items.splice(1, 1); }, /^tsvz: archive .* is not signed \(/);
    const items = await readTar(good);
    items.splice(1, 1);
    const file = path.join(archives, 'unsigned-ok.tar');
    await writeTar(file, items);
    const r = t.run(['restore', 'imp', '--import', file, '--trust-unsigned']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: .* is not signed/);
    t.ok(['destroy', '--force', 'imp']);
  });

  test('a template naming a host path is refused, even signed', async () => {
    for (const template of ['tar:/etc/shadow', '/etc', '../x']) {
      await refused(`template-${template.replace(/\W/g, '')}`, (items) => {
        const manifest = JSON.parse(items[0].data.toString());
        manifest.config.template = template;
        items[0].data = Buffer.from(JSON.stringify(manifest));
        replaceFile(items, 'config.json', Buffer.from(JSON.stringify(manifest.config, null, 2) + '\n'));
        resign(items, hostKeyOf(t.dir));
      }, /is not a template name/);
    }
  });

  test('a checkpoint from a CPU this host lacks is refused before anything is created', async () => {
    await refused('cpu', (items) => {
      const img = items.find((i) => i.header.name === 'images/cpuinfo.img')!;
      replaceFile(items, img.header.name, impossibleCpu(img.data));
      resign(items, hostKeyOf(t.dir));
    }, /was dumped on a CPU this host cannot run it on/);
  });

  test('a /dev list with a host block device or a foreign device is refused', async () => {
    for (const [label, entry] of [['blk', { path: 'sda', type: 'blk', rdev: 2048 }], ['mem', { path: 'mem', type: 'chr', rdev: 257 }]] as const) {
      await refused(`dev-${label}`, (items) => {
        const dev = items.find((i) => i.header.name === 'images/tsvz-dev.json')!;
        const image = JSON.parse(dev.data.toString());
        image.entries.push({ ...entry, mode: 0o666, uid: 0, gid: 0, mtimeMs: 0 });
        replaceFile(items, dev.header.name, Buffer.from(JSON.stringify(image)));
        resign(items, hostKeyOf(t.dir));
      }, label === 'blk' ? /holds a block device/ : /holds device 1:1 .*which no container may bring/);
    }
  });
});
