import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { DEV_IMAGE, DevImage } from '../../checkpoint/dev-tmpfs';
import { prepareIdMap } from '../../checkpoint/idmap-remap';
import { IdExtent, MAGIC, readUsernsImage, writeUsernsImage } from '../../checkpoint/images';
import type { ContainerConfig, IdMapConfig } from '../../runtime/config';

describe("a checkpoint's user namespace, made the restoring container's", () => {
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-remap-'));
  after(() => fs.rmSync(top, { recursive: true, force: true }));
  let n = 0;
  const SIZE = 65536;

  /** A checkpoint directory with a userns image of these maps (and a /dev list owned by `devOwner`), or none. */
  const checkpoint = (maps?: { uid: IdExtent[]; gid: IdExtent[] }, devOwner?: number): string => {
    const dir = path.join(top, String(n++));
    fs.mkdirSync(dir);
    if (maps) {
      const file = path.join(dir, 'userns-14.img');
      const header = Buffer.alloc(8);
      header.writeUInt32LE(MAGIC.common, 0);
      header.writeUInt32LE(MAGIC.userns, 4);
      fs.writeFileSync(file, header);
      writeUsernsImage({ file, ...maps });
    }
    if (devOwner !== undefined) {
      const dev: DevImage = {
        version: 1,
        options: `size=65536k,mode=755,uid=${devOwner},gid=${devOwner}`,
        mountOptions: ['rw', 'nosuid'],
        root: { mode: 0o755, uid: devOwner, gid: devOwner },
        entries: [
          { path: 'null', type: 'chr', mode: 0o666, uid: devOwner, gid: devOwner, mtimeMs: 0, rdev: 259 },
          { path: 'keep', type: 'file', mode: 0o600, uid: devOwner + 1000, gid: devOwner + 5, mtimeMs: 0, data: '' },
          { path: 'hostowned', type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeMs: 0, data: '' },
        ],
      };
      fs.writeFileSync(path.join(dir, DEV_IMAGE), JSON.stringify(dev));
    }
    return dir;
  };
  const one = (base: number): IdExtent[] => [{ first: 0, lowerFirst: base, count: SIZE }];
  const config = (idmap?: IdMapConfig): ContainerConfig => ({ name: 'c1', ...(idmap ? { idmap } : {}) } as ContainerConfig);
  const map = (base: number): IdMapConfig => ({ uid: base, gid: base + 7, size: SIZE, rootfs: 'idmapped' });

  it('leaves a checkpoint of the same range as it is', () => {
    const dir = checkpoint({ uid: one(200000), gid: one(200007) }, 200000);
    const before = fs.readFileSync(path.join(dir, 'userns-14.img'));
    assert.deepEqual(prepareIdMap(dir, 'cp1', config(map(200000))), { remapped: false });
    assert.deepEqual(fs.readFileSync(path.join(dir, 'userns-14.img')), before);
  });

  it("moves the maps and /dev's owners to the container's range; ids outside the old range stay", () => {
    const dir = checkpoint({ uid: one(200000), gid: one(200000) }, 200000);
    assert.deepEqual(prepareIdMap(dir, 'cp1', config(map(900000))), { remapped: true });
    const image = readUsernsImage(dir)!;
    assert.deepEqual(image.uid, one(900000));
    assert.deepEqual(image.gid, one(900007));
    const dev = JSON.parse(fs.readFileSync(path.join(dir, DEV_IMAGE), 'utf8')) as DevImage;
    assert.deepEqual(dev.root, { mode: 0o755, uid: 900000, gid: 900007 });
    assert.deepEqual(dev.entries.map((e) => [e.path, e.uid, e.gid]), [['null', 900000, 900007], ['keep', 901000, 900012], ['hostowned', 0, 0]]);
    assert.equal(dev.options, 'size=65536k,mode=755,uid=900000,gid=900007');
    // Again: nothing moves twice.
    assert.deepEqual(prepareIdMap(dir, 'cp1', config(map(900000))), { remapped: false });
  });

  it("never restores a map the images chose: root mapped to the host's root becomes the container's range", () => {
    const dir = checkpoint({ uid: one(0), gid: one(0) });
    prepareIdMap(dir, 'cp1', config(map(900000)));
    assert.deepEqual(readUsernsImage(dir)!.uid, one(900000));
  });

  it('refuses what tsvz does not make, and a kind mismatch either way', () => {
    const twoExtents = checkpoint({ uid: [...one(200000), { first: SIZE, lowerFirst: 0, count: 1 }], gid: one(200000) });
    assert.throws(() => prepareIdMap(twoExtents, 'cp1', config(map(900000))), /maps its ids in a way tsvz does not make/);
    const bigger = checkpoint({ uid: [{ first: 0, lowerFirst: 200000, count: SIZE * 2 }], gid: [{ first: 0, lowerFirst: 200000, count: SIZE * 2 }] });
    assert.throws(() => prepareIdMap(bigger, 'cp1', config(map(900000))), /maps 131072 ids, container c1 65536/);
    const privileged = checkpoint();
    assert.throws(() => prepareIdMap(privileged, 'cp1', config(map(900000))), /taken of a privileged container/);
    assert.deepEqual(prepareIdMap(privileged, 'cp1', config()), { remapped: false });
    const userns = checkpoint({ uid: one(200000), gid: one(200000) });
    assert.throws(() => prepareIdMap(userns, 'cp1', config()), /taken in a user namespace, and container c1 is privileged/);
  });
});
