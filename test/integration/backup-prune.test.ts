import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { rootSkipReason, TestRoot } from '../helpers/cli';

/**
 * Retention on real snapshots through the CLI: what it never removes (the
 * newest, protected ones, a clone's origin, a target's base, one being
 * sent), and a snapshot deleted behind tsvz's back.
 */
const skip = rootSkipReason();

describe('prune and scheduled runs on real snapshots', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());
  type Row = { name: string; action: string; reason?: string };
  const plan = (...args: string[]) => JSON.parse(t.ok(['prune', 'tsvz-p1', ...args, '--json'])) as Row[];
  const snaps = () => (JSON.parse(t.ok(['snapshot', 'list', 'tsvz-p1', '--json'])) as { name: string; status: string }[]);
  const run = () => /^(h-[0-9-]+)/.exec(t.ok(['schedule', 'run', 'tsvz-p1', 'h']))![1];
  const shipped = (value: unknown) => fs.writeFileSync(path.join(t.dir, 'backups', 'shipped.json'), JSON.stringify(value));

  test('the rules, protection, a clone origin, a target base and a send in flight', () => {
    t.ok(['create', 'tsvz-p1']);
    t.ok(['schedule', 'add', 'tsvz-p1', 'h', '--cron', '0 3 1 1 *', '--keep', 'last=1', '--tz', 'UTC']);
    t.ok(['snapshot', 'tsvz-p1', 'by-hand']);
    const s1 = run();
    t.ok(['clone', 'tsvz-p1', 'tsvz-c1', '--snapshot', s1]);
    const s2 = run();
    assert.match(s2, /^h-/);
    const s3 = run();
    // keep-last=1 over the schedule's own: s3; s1 held by its clone; s2 ran and went; by-hand is not the schedule's.
    assert.deepEqual(snaps().map((s) => s.name).sort(), ['by-hand', s1, s3].sort());
    assert.deepEqual(plan('--dry-run').map((r) => [r.name, r.action, r.reason]), [[s3, 'keep', 'last'], [s1, 'keep', 'held: origin of tsvz-c1']]);

    shipped({ version: 1, containers: { 'tsvz-p1': { b: { base: s3 } } } });
    const s4 = run();
    assert.ok(snaps().some((s) => s.name === s3), 'the base b needs stays');
    shipped({ version: 1, containers: { 'tsvz-p1': { b: { base: s4, sending: { snapshot: s3, pid: process.pid, since: new Date().toISOString() } } } } });
    const r = plan('--dry-run', '--keep', 'last=1');
    assert.deepEqual(r.map((x) => [x.name, x.reason]), [[s4, 'last'], [s3, 'held: being sent to b'], [s1, 'held: origin of tsvz-c1'], ['by-hand', undefined]]);
    assert.equal(r.find((x) => x.name === 'by-hand')?.action, 'remove');

    t.ok(['snapshot', 'protect', 'tsvz-p1', 'by-hand']);
    const rm = t.run(['snapshot', 'rm', 'tsvz-p1', 'by-hand']);
    assert.notEqual(rm.status, 0);
    assert.match(rm.stderr, /^tsvz: snapshot by-hand of tsvz-p1 is protected/);
    assert.equal(plan('--keep', 'last=1').find((x) => x.name === 'by-hand')?.reason, 'protected');
    assert.ok(snaps().some((s) => s.name === 'by-hand'));
  });

  test('a snapshot deleted behind tsvz\'s back is reported missing; the schedule goes on', () => {
    const victim = snaps().find((s) => s.name.startsWith('h-') && s.status === 'ok')!.name;
    fs.rmSync(path.join(t.dir, 'containers', 'tsvz-p1', 'snapshots', victim), { recursive: true, force: true });
    const next = run();
    const now = snaps();
    assert.equal(now.find((s) => s.name === victim)?.status, 'missing');
    assert.equal(now.find((s) => s.name === next)?.status, 'ok');
    const rows = JSON.parse(t.ok(['backup', 'list', 'tsvz-p1', '--json'])) as { snapshot: string; notes: string[] }[];
    assert.ok(rows.find((x) => x.snapshot === victim)?.notes.some((n) => n.startsWith('MISSING')));
  });

  test('a target removed from remotes.json after the schedule was made: the snapshot is still taken, the run fails and says why', () => {
    const file = path.join(t.dir, 'backups', 'schedules.json');
    const f = JSON.parse(fs.readFileSync(file, 'utf8'));
    f.schedules[0].to = 'tsvz-gone';
    fs.writeFileSync(file, JSON.stringify(f));
    const r = t.run(['schedule', 'run', 'tsvz-p1', 'h']);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /^tsvz: run failed: snapshot h-[0-9-]+ taken, but sending it to tsvz-gone failed: no remote tsvz-gone/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    const taken = /snapshot (h-[0-9-]+) taken/.exec(r.stderr)![1];
    assert.equal(snaps().find((x) => x.name === taken)?.status, 'ok', 'the snapshot was taken and kept');
    const row = (JSON.parse(t.ok(['schedule', 'list', '--json'])) as { name: string; last?: { outcome: string; snapshot?: string } }[]).find((x) => x.name === 'h');
    assert.equal(row?.last?.outcome, 'failed');
  });
});
