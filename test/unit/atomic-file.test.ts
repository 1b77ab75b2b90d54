import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { AtomicFileSlot, jsonText, readJsonIfExists, writeJsonAtomic } from '../../lib/atomic-file';

describe('atomic files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-atomic-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const leftovers = () => fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));

  it('writeJsonAtomic replaces the file whole and leaves no temp file', async () => {
    const file = path.join(dir, 'state.json');
    await writeJsonAtomic(file, { status: 'stopped' });
    await writeJsonAtomic(file, { status: 'running', pid: 7 });
    assert.deepEqual(readJsonIfExists(file), { status: 'running', pid: 7 });
    assert.equal(fs.readFileSync(file, 'utf8'), jsonText({ status: 'running', pid: 7 }));
    assert.deepEqual(leftovers(), []);
  });

  it('a slot is a temp file of spaces until commit, which overwrites it in place and renames it', async () => {
    const file = path.join(dir, 'record.json');
    const slot = await AtomicFileSlot.prepare(file, 512);
    const [tmp] = leftovers();
    assert.ok(tmp, 'the temp file exists before the commit');
    assert.equal(fs.statSync(path.join(dir, tmp)).size, 512);
    assert.equal(fs.existsSync(file), false);
    const ino = fs.statSync(path.join(dir, tmp)).ino;
    await slot.commit(jsonText({ id: 'c1', frozenMs: 12.5 }));
    assert.deepEqual(readJsonIfExists(file), { id: 'c1', frozenMs: 12.5 }, 'trailing spaces are JSON whitespace');
    assert.equal(fs.statSync(file).size, 512, 'same size: no block changes');
    assert.equal(fs.statSync(file).ino, ino, 'the same file, renamed');
    assert.deepEqual(leftovers(), []);
    await assert.rejects(slot.commit('{}'), /already used/);
  });

  it('a text longer than the slot is written the ordinary way', async () => {
    const file = path.join(dir, 'long.json');
    const slot = await AtomicFileSlot.prepare(file, 16);
    const value = { text: 'x'.repeat(100) };
    await slot.commit(jsonText(value));
    assert.equal(fs.readFileSync(file, 'utf8'), jsonText(value));
    assert.deepEqual(leftovers(), []);
  });

  it('a background flush before the commit changes nothing in what is written', async () => {
    const file = path.join(dir, 'flushed.json');
    const slot = await AtomicFileSlot.prepare(file, 256);
    slot.startFlush();
    slot.startFlush(); // once is enough: a second call is a no-op
    await slot.commit(jsonText({ ok: true }));
    assert.deepEqual(readJsonIfExists(file), { ok: true });
    assert.deepEqual(leftovers(), []);
  });

  it('discard removes the temp file (after a flush in flight) and is idempotent; nothing is written', async () => {
    const file = path.join(dir, 'dropped.json');
    const slot = await AtomicFileSlot.prepare(file);
    assert.equal(leftovers().length, 1);
    slot.startFlush();
    await slot.discard();
    await slot.discard();
    assert.deepEqual(leftovers(), []);
    assert.equal(fs.existsSync(file), false);
  });
});
