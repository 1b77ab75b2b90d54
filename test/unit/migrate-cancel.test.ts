import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Root } from '../../lib/root';
import { processStartTime } from '../../lib/proc';
import { cancelMigration } from '../../migrate/cancel';
import { MigrationJournal, newMigrationId } from '../../migrate/journal';

/** cancel's decisions that need no migration running: who drives it, and how far it got. */
test('a migration the daemon drives for a remote client is cancelled there, never by a signal to the daemon', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-cancel-'));
  try {
    const root = new Root(dir);
    const journal = new MigrationJournal(root);
    // This process stands in for the daemon: alive, and a SIGTERM would end it (and this test).
    const driver = { pid: process.pid, start: processStartTime(process.pid) ?? 0, daemon: true };
    const rec = await journal.start({ id: newMigrationId(), role: 'source', name: 'p1', phase: 'transferring', mode: 'stop', peer: 'host-b', driver });
    await assert.rejects(cancelMigration(root, 'p1', 1000), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'ESTATE');
      assert.match(err.message, /^the migration of p1 to host-b is driven by this host's daemon for a remote client$/);
      assert.match(err.hint ?? '', /Ctrl-C on its `tsvz --remote` command/);
      return true;
    });
    await journal.advance(rec, 'switching');
    await assert.rejects(cancelMigration(root, 'p1', 1000), /is past the switch-over/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
