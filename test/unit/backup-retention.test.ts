import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyRetention, formatKeepPolicy, isoWeek, parseKeepPolicy, RetentionItem } from '../../backup/retention';

/** Snapshots named by their UTC time. */
function snaps(...times: string[]): RetentionItem[] {
  return times.map((t) => ({ name: t.replace(/[-:]/g, ''), createdAt: new Date(t).toISOString() }));
}

/** name → 'keep:RULE' | 'remove', newest first. */
function plan(items: RetentionItem[], keep: string, timeZone = 'UTC', holds?: Map<string, string>): string[] {
  return applyRetention(items, keep === '' ? {} : parseKeepPolicy(keep), { timeZone, holds }).map((d) => `${d.name} ${d.action === 'keep' ? `keep:${d.reason}` : 'remove'}`);
}

describe('retention (Proxmox prune-backups semantics)', () => {
  test('no rule keeps everything', () => {
    assert.deepEqual(plan(snaps('2026-01-01T10:00Z', '2026-01-02T10:00Z'), ''), ['20260102T1000Z keep:all', '20260101T1000Z keep:all']);
  });

  test('keep-last keeps the N newest', () => {
    assert.deepEqual(plan(snaps('2026-01-01T10:00Z', '2026-01-01T11:00Z', '2026-01-01T12:00Z', '2026-01-01T13:00Z', '2026-01-01T14:00Z'), 'last=3'), [
      '20260101T1400Z keep:last', '20260101T1300Z keep:last', '20260101T1200Z keep:last', '20260101T1100Z remove', '20260101T1000Z remove',
    ]);
  });

  test('keep-daily keeps the newest of each day; days without snapshots do not count', () => {
    const items = snaps('2026-01-01T10:00Z', '2026-01-01T12:00Z', '2026-01-03T09:00Z', '2026-01-03T18:00Z', '2026-01-04T08:00Z');
    assert.deepEqual(plan(items, 'daily=2'), [
      '20260104T0800Z keep:daily', '20260103T1800Z keep:daily', '20260103T0900Z remove', '20260101T1200Z remove', '20260101T1000Z remove',
    ]);
  });

  test('a day already holding a snapshot kept by keep-last is not counted again by keep-daily', () => {
    const items = snaps('2026-01-01T10:00Z', '2026-01-01T12:00Z', '2026-01-02T09:00Z', '2026-01-02T18:00Z', '2026-01-03T08:00Z');
    assert.deepEqual(plan(items, 'last=1,daily=2'), [
      '20260103T0800Z keep:last', '20260102T1800Z keep:daily', '20260102T0900Z remove', '20260101T1200Z keep:daily', '20260101T1000Z remove',
    ]);
  });

  test("an older snapshot of a period a rule kept is removed there, and no later rule takes it", () => {
    // Thu 8 and Fri 9 January 2026 are in ISO week 2; Mon 29 December 2025 in week 1 of 2026.
    const items = snaps('2025-12-29T12:00Z', '2026-01-08T12:00Z', '2026-01-09T09:00Z', '2026-01-09T18:00Z');
    assert.deepEqual(plan(items, 'daily=1,weekly=2'), [
      '20260109T1800Z keep:daily', '20260109T0900Z remove', '20260108T1200Z remove', '20251229T1200Z keep:weekly',
    ]);
  });

  test('ISO weeks across the turn of the year', () => {
    assert.deepEqual(isoWeek(2020, 12, 31), { year: 2020, week: 53 });
    assert.deepEqual(isoWeek(2021, 1, 3), { year: 2020, week: 53 });
    assert.deepEqual(isoWeek(2021, 1, 4), { year: 2021, week: 1 });
    assert.deepEqual(isoWeek(2024, 12, 30), { year: 2025, week: 1 });
    assert.deepEqual(isoWeek(2026, 1, 1), { year: 2026, week: 1 });
    // Mon 28 Dec 2020 and Sun 3 Jan 2021 share week 53 of 2020: only the newer stays.
    assert.deepEqual(plan(snaps('2020-12-28T12:00Z', '2021-01-03T12:00Z', '2021-01-04T12:00Z'), 'weekly=3'), [
      '20210104T1200Z keep:weekly', '20210103T1200Z keep:weekly', '20201228T1200Z remove',
    ]);
  });

  test('monthly and yearly', () => {
    const items = snaps('2024-06-01T00:00Z', '2025-03-10T00:00Z', '2025-11-30T00:00Z', '2025-12-01T00:00Z', '2026-01-15T00:00Z', '2026-01-20T00:00Z');
    assert.deepEqual(plan(items, 'monthly=2,yearly=2'), [
      '20260120T0000Z keep:monthly', '20260115T0000Z remove', '20251201T0000Z keep:monthly', '20251130T0000Z remove', '20250310T0000Z remove', '20240601T0000Z keep:yearly',
    ]);
  });

  test('protected snapshots are never removed and never counted', () => {
    const items = snaps('2026-01-01T10:00Z', '2026-01-01T11:00Z', '2026-01-01T12:00Z', '2026-01-01T13:00Z');
    items[3].protected = true;
    items[0].protected = true;
    assert.deepEqual(plan(items, 'last=2'), [
      '20260101T1300Z keep:protected', '20260101T1200Z keep:last', '20260101T1100Z keep:last', '20260101T1000Z keep:protected',
    ]);
    // A protected snapshot does not fill its day for keep-daily either.
    const day = snaps('2026-01-01T09:00Z', '2026-01-01T18:00Z');
    day[1].protected = true;
    assert.deepEqual(plan(day, 'daily=1'), ['20260101T1800Z keep:protected', '20260101T0900Z keep:daily']);
  });

  test('periods are counted in the given time zone', () => {
    // 22:30 UTC and 23:30 UTC on 1 March are 23:30 on the 1st and 00:30 on the 2nd in Berlin.
    const items = snaps('2026-03-01T22:30Z', '2026-03-01T23:30Z');
    assert.deepEqual(plan(items, 'daily=2', 'UTC'), ['20260301T2330Z keep:daily', '20260301T2230Z remove']);
    assert.deepEqual(plan(items, 'daily=2', 'Europe/Berlin'), ['20260301T2330Z keep:daily', '20260301T2230Z keep:daily']);
    // The hour that happens twice (autumn, 02:00-03:00 Berlin) is one wall hour, as with Proxmox's localtime.
    assert.deepEqual(plan(snaps('2026-10-25T00:30Z', '2026-10-25T01:30Z'), 'hourly=2', 'Europe/Berlin'), ['20261025T0130Z keep:hourly', '20261025T0030Z remove']);
  });

  test('holds keep a snapshot the policy would remove, without changing what the rules count', () => {
    const items = snaps('2026-01-01T10:00Z', '2026-01-01T11:00Z', '2026-01-01T12:00Z');
    assert.deepEqual(plan(items, 'last=1', 'UTC', new Map([['20260101T1000Z', 'the base host-b needs']])), [
      '20260101T1200Z keep:last', '20260101T1100Z remove', '20260101T1000Z keep:held: the base host-b needs',
    ]);
  });

  test('the newest is never removed, even when every other snapshot is protected', () => {
    const items = snaps('2026-01-01T10:00Z', '2026-01-02T10:00Z');
    items[0].protected = true;
    const d = applyRetention(items, { last: 1 }, { timeZone: 'UTC' });
    assert.equal(d[0].action, 'keep');
    assert.equal(d.filter((x) => x.action === 'remove').length, 0);
  });

  // Proxmox VE's admin guide ("Retention Settings Example"): daily backups, keep-last=3,
  // keep-daily=13, keep-weekly=8, keep-monthly=11, keep-yearly=9: at least two weeks
  // of dailies, two months of weeklies, a year of monthlies and ten years in all.
  test("Proxmox's documented example: ten years of daily backups", () => {
    const end = Date.UTC(2026, 5, 15, 21, 0);
    const items: RetentionItem[] = [];
    for (let i = 0; i < 12 * 366; i++) {
      const t = new Date(end - i * 86_400_000);
      items.push({ name: `d${t.toISOString().slice(0, 10)}`, createdAt: t.toISOString() });
    }
    const d = applyRetention(items, parseKeepPolicy('keep-last=3,keep-daily=13,keep-weekly=8,keep-monthly=11,keep-yearly=9'), { timeZone: 'UTC' });
    const kept = d.filter((x) => x.action === 'keep');
    const by = (r: string) => kept.filter((x) => x.reason === r).length;
    assert.deepEqual([by('last'), by('daily'), by('weekly'), by('monthly'), by('yearly')], [3, 13, 8, 11, 9]);
    assert.equal(kept.length, 44);
    // The 16 newest days are all kept (three by keep-last, thirteen by keep-daily).
    assert.ok(d.slice(0, 16).every((x) => x.action === 'keep'));
    assert.equal(d[16].action, 'remove');
    // Weeklies cover at least two months more, monthlies a year, yearlies ten years.
    const oldest = (r: string) => Math.min(...kept.filter((x) => x.reason === r).map((x) => Date.parse(x.createdAt)));
    assert.ok(end - oldest('weekly') >= 8 * 7 * 86_400_000);
    assert.ok(end - oldest('monthly') >= 365 * 86_400_000);
    assert.ok(end - oldest('yearly') >= 9 * 365 * 86_400_000);
    // One per year beyond the monthlies: nine distinct years, each its newest (31 December).
    const years = kept.filter((x) => x.reason === 'yearly').map((x) => x.name);
    assert.equal(new Set(years.map((n) => n.slice(1, 5))).size, 9);
    assert.ok(years.every((n) => n.endsWith('-12-31')));
  });

  // Proxmox VE's vzdump example: --prune-backups keep-last=3,keep-daily=13,keep-yearly=9.
  test("Proxmox's vzdump example: keep-last=3,keep-daily=13,keep-yearly=9 over two dailies a day", () => {
    const end = Date.UTC(2026, 0, 20, 20, 0);
    const items: RetentionItem[] = [];
    for (let i = 0; i < 2 * 3 * 365; i++) {
      const t = new Date(end - i * 12 * 3_600_000);
      items.push({ name: `s${i}`, createdAt: t.toISOString() });
    }
    const d = applyRetention(items, parseKeepPolicy('keep-last=3,keep-daily=13,keep-yearly=9'), { timeZone: 'UTC' });
    const kept = d.filter((x) => x.action === 'keep');
    // last: the three newest (20 Jan 20:00, 08:00, 19 Jan 20:00); daily: 18 Jan back to 6 Jan, one each;
    // yearly: 2025 and 2024 and 2023 (the newest of each), the years left in the three-year history.
    assert.deepEqual(kept.map((x) => x.createdAt.slice(0, 13)), [
      '2026-01-20T20', '2026-01-20T08', '2026-01-19T20',
      ...Array.from({ length: 13 }, (_, k) => `2026-01-${String(18 - k).padStart(2, '0')}T20`),
      '2025-12-31T20', '2024-12-31T20', '2023-12-31T20',
    ]);
    assert.deepEqual(kept.map((x) => x.reason), [...Array(3).fill('last'), ...Array(13).fill('daily'), ...Array(3).fill('yearly')]);
  });
});

describe('keep policies', () => {
  test('parse, with or without the keep- prefix, and format in the fixed order', () => {
    assert.deepEqual(parseKeepPolicy('daily=7,last=3'), { daily: 7, last: 3 });
    assert.deepEqual(parseKeepPolicy('keep-last=3,keep-weekly=4'), { last: 3, weekly: 4 });
    assert.equal(formatKeepPolicy(parseKeepPolicy('yearly=2,last=3,hourly=24')), 'last=3,hourly=24,yearly=2');
  });

  test('unknown, zero, repeated, malformed and empty rules are refused', () => {
    for (const [text, re] of [
      ['daily=0', /keeps nothing/], ['minutely=5', /unknown keep rule "minutely"/], ['daily=x', /whole number/], ['daily=-1', /whole number/],
      ['daily=1,daily=2', /twice/], ['', /empty/], ['daily', /RULE=N/], ['daily=1000001', /over/],
    ] as const) {
      assert.throws(() => parseKeepPolicy(text), (err: Error & { code?: string }) => err.code === 'EINVAL' && re.test(err.message), text);
    }
  });
});
