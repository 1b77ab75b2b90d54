import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { shiftOwnership } from '../../runtime/rootfs-owner';

const skip = process.getuid?.() !== 0 ? 'chown needs root' : undefined;
if (skip) console.log(`# skipped rootfs shift tests: ${skip}`);

describe('shifting a rootfs into a range (filesystems without idmapped mounts)', { skip }, () => {
  const top = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-shift-'));
  after(() => fs.rmSync(top, { recursive: true, force: true }));
  const SIZE = 65536;
  const A = 1_000_000;
  const B = 3_000_000;

  it('moves every owner once, keeps set-id bits and links, leaves ids outside the range', async () => {
    const root = path.join(top, 'rootfs');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'x');
    fs.writeFileSync(path.join(root, 'suid'), 'x');
    fs.chownSync(path.join(root, 'suid'), 0, 0);
    fs.chmodSync(path.join(root, 'suid'), 0o4755);
    fs.writeFileSync(path.join(root, 'user'), 'x');
    fs.chownSync(path.join(root, 'user'), 1000, 100);
    fs.linkSync(path.join(root, 'user'), path.join(root, 'user-link'));
    fs.symlinkSync('/etc/shadow', path.join(root, 'sym'));
    fs.writeFileSync(path.join(top, 'outside'), 'x'); // a symlink's target: never followed
    fs.symlinkSync(path.join(top, 'outside'), path.join(root, 'out'));
    fs.writeFileSync(path.join(root, 'foreign'), 'x');
    fs.chownSync(path.join(root, 'foreign'), A + SIZE + 5, 7); // already outside the range: stays

    const changed = await shiftOwnership(root, { uid: 0, gid: 0 }, { uid: A, gid: A }, SIZE);
    const owner = (p: string) => { const st = fs.lstatSync(path.join(root, p)); return [st.uid, st.gid]; };
    assert.deepEqual(owner('.'), [A, A]);
    assert.deepEqual(owner('etc/passwd'), [A, A]);
    assert.deepEqual(owner('user'), [A + 1000, A + 100], 'a hard link is shifted once');
    assert.deepEqual(owner('sym'), [A, A]);
    assert.deepEqual(owner('foreign'), [A + SIZE + 5, A + 7]);
    assert.equal(fs.statSync(path.join(root, 'suid')).mode & 0o7777, 0o4755, 'setuid kept');
    assert.deepEqual([fs.statSync(path.join(top, 'outside')).uid], [0], "a symlink's target is left alone");
    assert.ok(changed >= 8);

    // From one range to another (a clone): the same offsets.
    await shiftOwnership(root, { uid: A, gid: A }, { uid: B, gid: B }, SIZE);
    assert.deepEqual(owner('user-link'), [B + 1000, B + 100]);
    assert.deepEqual(owner('.'), [B, B]);
    assert.equal(await shiftOwnership(root, { uid: B, gid: B }, { uid: B, gid: B }, SIZE), 0);
  });
});
