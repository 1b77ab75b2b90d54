import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { changesSince, indexTree, packTreeChanges, packTreeLive, unpackTreeChanges } from '../../archive/tree-delta';
import { packTree, unpackTree } from '../../archive/tree-tar';

/*
 * A tree sent whole, changed, then sent again as its changes only: the
 * copy ends up equal to the source, and a peer's removal list reaches
 * nothing outside the copy.
 */
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-delta-'));
after(() => fs.rmSync(base, { recursive: true, force: true }));

function write(root: string, rel: string, data: string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), data);
}

/** Every entry under `root`: its type and, for files and symlinks, what it holds. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      const full = path.join(root, child);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) { out[child] = `dir ${(st.mode & 0o7777).toString(8)}`; walk(child); }
      else if (st.isSymbolicLink()) out[child] = `-> ${fs.readlinkSync(full)}`;
      else out[child] = `file ${(st.mode & 0o7777).toString(8)} ${fs.readFileSync(full, 'utf8')}`;
    }
  };
  walk('');
  return out;
}

test('the second pass carries exactly what changed, and the copy equals the source', async () => {
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  write(src, 'etc/hostname', 'p1');
  write(src, 'etc/kept', 'same');
  write(src, 'var/log/old', 'bye');
  write(src, 'home/gone/deep/file', 'x');
  write(src, 'was-dir/inner', 'y');
  fs.symlinkSync('etc/kept', path.join(src, 'link'));

  const first = packTreeLive(src);
  await unpackTree(first.stream, dst);
  // What a running container does meanwhile.
  write(src, 'etc/hostname', 'p1-renamed');
  write(src, 'etc/new', 'hello');
  fs.rmSync(path.join(src, 'var/log/old'));
  fs.rmSync(path.join(src, 'home/gone'), { recursive: true });
  fs.rmSync(path.join(src, 'was-dir'), { recursive: true });
  write(src, 'was-dir', 'now a file');
  fs.chmodSync(path.join(src, 'etc/kept'), 0o600);
  fs.rmSync(path.join(src, 'link'));
  fs.symlinkSync('etc/new', path.join(src, 'link'));

  const { changed, removed } = changesSince(first.sent, await indexTree(src));
  assert.deepEqual(removed, ['home/gone', 'var/log/old', 'was-dir']);
  for (const rel of ['etc/hostname', 'etc/new', 'etc/kept', 'was-dir', 'link']) assert.ok(changed.has(rel), `${rel} goes again`);
  const got = await unpackTreeChanges(packTreeChanges(src, changed), dst, removed);
  assert.equal(got.removed, 3);
  assert.deepEqual(snapshot(dst), snapshot(src));
});

test('an unchanged file is not sent again', async () => {
  const src = path.join(base, 'quiet');
  fs.mkdirSync(src);
  write(src, 'big', 'x'.repeat(10_000));
  const first = packTreeLive(src);
  fs.mkdirSync(path.join(base, 'quiet-copy'));
  await unpackTree(first.stream, path.join(base, 'quiet-copy'));
  // As if the first pass began 5 s after the file's last change (ctime cannot be set back, so the clock is moved instead).
  first.sent.startedAtNs += 5_000_000_000n;
  const { changed, removed } = changesSince(first.sent, await indexTree(src));
  assert.deepEqual([...changed], []);
  assert.deepEqual(removed, []);
});

test('a tree changed while its first pass reads it: a file cut short, one gone, a directory swapped for a symlink to outside; the second pass leaves the copy equal', async () => {
  const src = path.join(base, 'busy');
  const dst = path.join(base, 'busy-copy');
  const outside = path.join(base, 'busy-outside');
  fs.mkdirSync(dst);
  write(outside, 'secret', 'not for the copy');
  write(src, 'a-big', 'x'.repeat(4 * 1024 * 1024));
  write(src, 'b-gone', 'soon gone');
  write(src, 'c-dir/inner', 'inside');
  const first = packTreeLive(src);
  const reader = first.stream[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  while (head.reduce((n, b) => n + b.length, 0) < 1024 * 1024) head.push((await reader.next()).value as Buffer);
  // The packer is inside a-big now (the stream holds back the rest until it is read).
  fs.truncateSync(path.join(src, 'a-big'), 10);
  fs.rmSync(path.join(src, 'b-gone'));
  fs.rmSync(path.join(src, 'c-dir'), { recursive: true });
  fs.symlinkSync(outside, path.join(src, 'c-dir'));
  const rest = async function* () {
    yield* head;
    for (let r = await reader.next(); !r.done; r = await reader.next()) yield r.value as Buffer;
  };
  await unpackTree(Readable.from(rest()), dst);
  assert.equal(fs.statSync(path.join(dst, 'a-big')).size, 4 * 1024 * 1024, 'a-big went at the size its header said');
  const { changed, removed } = changesSince(first.sent, await indexTree(src));
  await unpackTreeChanges(packTreeChanges(src, changed), dst, removed);
  assert.deepEqual(snapshot(dst), snapshot(src), 'c-dir is the symlink there too, and nothing from outside came');
});

test("a peer's removals stay inside the tree: traversal is refused, a symlinked parent is not followed", async () => {
  const dst = path.join(base, 'guarded');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(dst);
  fs.mkdirSync(outside);
  write(outside, 'precious', 'keep me');
  fs.symlinkSync(outside, path.join(dst, 'escape'));
  const empty = () => packTree(fs.mkdtempSync(path.join(base, 'empty-')));
  for (const bad of ['../outside/precious', '/etc/passwd', 'a/../../x', '', 'a//b', './x']) {
    await assert.rejects(unpackTreeChanges(empty(), dst, [bad]), /invalid path to remove/, JSON.stringify(bad));
  }
  await assert.rejects(unpackTreeChanges(empty(), dst, 'escape/precious'), /not a list/);
  await unpackTreeChanges(empty(), dst, ['escape/precious']);
  assert.equal(fs.readFileSync(path.join(outside, 'precious'), 'utf8'), 'keep me', 'nothing through the symlink');
  await unpackTreeChanges(empty(), dst, ['escape']);
  assert.ok(!fs.existsSync(path.join(dst, 'escape')), 'the symlink itself is removed');
  assert.equal(fs.readFileSync(path.join(outside, 'precious'), 'utf8'), 'keep me', 'and not what it pointed at');
});
