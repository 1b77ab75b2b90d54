import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { Root } from '../../lib/root';
import { MigrationJournal, newMigrationId } from '../../migrate/journal';
import { meter, metered, TransferProgress } from '../../migrate/progress';

test('a metered stream passes every byte and reports its end with the count, the rate and no time left', async () => {
  const seen: TransferProgress[] = [];
  const body = metered(Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(24, 2)]), 'files', 2048, (p) => seen.push(p));
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).length, 1024);
  const last = seen.at(-1)!;
  assert.equal(last.done, true);
  assert.equal(last.bytes, 1024);
  assert.equal(last.total, 2048);
  assert.ok(last.bytesPerSec > 0 && last.seconds > 0);
  assert.ok(last.etaSec !== undefined && last.etaSec > 0, 'half of the total is still to come');
  assert.equal(seen.filter((p) => p.done).length, 1);
});

test("a metered stream fails with its body's error and reports no end", async () => {
  const seen: TransferProgress[] = [];
  async function* broken() { yield Buffer.from('abc'); throw new Error('shrank while it was packed'); }
  const body = metered(Readable.from(broken()), 'memory', 10, (p) => seen.push(p));
  await assert.rejects(async () => { for await (const c of body) void c; }, /shrank while it was packed/);
  assert.equal(seen.filter((p) => p.done).length, 0);
});

test('a transfer that outgrows its estimate reports what it carried as the total, with no time left', () => {
  const seen: TransferProgress[] = [];
  const m = meter('memory', 100, (p) => seen.push(p));
  m.add(150);
  m.end();
  const last = seen.at(-1)!;
  assert.equal(last.bytes, 150);
  assert.equal(last.total, 150);
  assert.equal(last.etaSec ?? 0, 0);
});

test("a migration's progress file is kept while it runs and removed once it settles, after its last write", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-progress-'));
  try {
    const journal = new MigrationJournal(new Root(dir));
    const rec = await journal.start({ id: newMigrationId(), role: 'source', name: 'p1', phase: 'transferring', mode: 'stop', peer: 'b' });
    const note = { what: 'files', bytes: 1, total: 2, bytesPerSec: 1, done: false, at: new Date().toISOString() };
    await journal.noteProgress(rec.id, note);
    await journal.advance(rec, 'switching');
    assert.equal(journal.progress(rec.id)?.bytes, 1);
    // A write still under way when the migration settles does not outlive it.
    void journal.noteProgress(rec.id, { ...note, bytes: 2, done: true });
    await journal.advance(rec, 'committed');
    assert.equal(journal.progress(rec.id), undefined);
    assert.deepEqual(fs.readdirSync(journal.dir), [`${rec.id}.json`]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
