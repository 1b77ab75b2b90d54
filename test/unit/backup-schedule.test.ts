import assert from 'node:assert/strict';
import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { after, beforeEach, describe, test } from 'node:test';
import { Root } from '../../lib/root';
import { Clock, executeRun, Scheduler } from '../../backup/scheduler';
import { parseCron, Schedule, ScheduleStore, validateSchedule } from '../../backup/schedules';
import { dueAt } from '../../backup/timing';

/**
 * A clock the test moves: timers run on elapsed time (as Node's do), the
 * wall clock is elapsed time plus an offset a jump changes.
 */
class FakeClock implements Clock {
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  private elapsed = 0;
  private offset: number;
  constructor(start: number) { this.offset = start; }
  get t(): number { return this.elapsed + this.offset; }
  /** Set the wall clock (a jump): pending timers keep their elapsed-time deadlines. */
  set t(wall: number) { this.offset = wall - this.elapsed; }
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.elapsed + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void { this.timers = this.timers.filter((x) => x.id !== h); }
  /** Fire every timer due up to `until`, letting each run finish before the next. */
  async runUntil(wallUntil: number, sched: Scheduler): Promise<void> {
    const until = wallUntil - this.offset;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > until) break;
      this.timers.shift();
      this.elapsed = next.at;
      next.fn();
      await sched.idle();
    }
    this.elapsed = until;
  }
}

const at = (iso: string) => Date.parse(iso);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-backup-schedule-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let root: Root;
let store: ScheduleStore;
let n = 0;
beforeEach(() => {
  root = new Root(path.join(tmp, `root${++n}`));
  fs.mkdirSync(root.locksDir, { recursive: true });
  store = new ScheduleStore(root);
});

async function addSchedule(cron: string, createdAt: string, timeZone = 'Europe/Berlin'): Promise<Schedule> {
  const s = validateSchedule({ container: 'p1', name: 'hourly', cron, timeZone, keep: { last: 3 }, createdAt: new Date(createdAt).toISOString() });
  await store.add(s);
  return s;
}

/** A scheduler whose runs only note when they ran. */
function scheduler(clock: FakeClock, ran: string[], maxSleepMs = 6 * 3_600_000): Scheduler {
  return new Scheduler(store, async () => { ran.push(new Date(clock.now()).toISOString()); return {}; }, { clock, maxSleepMs });
}

describe('schedules: when runs happen (fake clock)', () => {
  test('spring DST in Europe/Berlin: 02:30 does not happen on 29 March, the run is at 03:30 CEST, once', async () => {
    await addSchedule('30 2 * * *', '2026-03-27T12:00:00Z');
    const clock = new FakeClock(at('2026-03-27T12:00:00Z'));
    const ran: string[] = [];
    const s = scheduler(clock, ran);
    await s.start();
    await clock.runUntil(at('2026-03-31T00:00:00Z'), s);
    await s.stop();
    assert.deepEqual(ran.map((x) => x.slice(0, 16)), ['2026-03-28T01:30', '2026-03-29T01:30', '2026-03-30T00:30']);
  });

  test('autumn DST in Europe/Berlin: 02:30 happens twice on 25 October, the run happens once', async () => {
    await addSchedule('30 2 * * *', '2026-10-23T12:00:00Z');
    const clock = new FakeClock(at('2026-10-23T12:00:00Z'));
    const ran: string[] = [];
    const s = scheduler(clock, ran);
    await s.start();
    await clock.runUntil(at('2026-10-27T00:00:00Z'), s);
    await s.stop();
    assert.deepEqual(ran.map((x) => x.slice(0, 16)), ['2026-10-24T00:30', '2026-10-25T01:30', '2026-10-26T01:30']);
  });

  test('the clock jumping a day forward gives one catch-up run, then the hourly rhythm again', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const clock = new FakeClock(at('2026-05-01T09:30:00Z'));
    const ran: string[] = [];
    const s = scheduler(clock, ran, 60_000);
    await s.start();
    await clock.runUntil(at('2026-05-01T10:00:30Z'), s);
    assert.deepEqual(ran, ['2026-05-01T10:00:00.005Z']);
    clock.t = at('2026-05-02T10:20:00Z'); // the jump; the next wake-up (at most a minute) notices it
    await clock.runUntil(at('2026-05-02T10:21:30Z'), s);
    assert.equal(ran.length, 2);
    assert.equal(store.runs('p1', 'hourly').last?.trigger, 'catch-up');
    assert.equal(store.runs('p1', 'hourly').lastSlot, '2026-05-02T10:00:00.000Z');
    await clock.runUntil(at('2026-05-02T11:00:30Z'), s);
    await s.stop();
    assert.equal(ran.length, 3);
    assert.equal(store.runs('p1', 'hourly').last?.trigger, 'timer');
  });

  test('the clock going back an hour runs no slot twice', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const clock = new FakeClock(at('2026-05-01T09:30:00Z'));
    const ran: string[] = [];
    const s = scheduler(clock, ran, 60_000);
    await s.start();
    await clock.runUntil(at('2026-05-01T10:00:30Z'), s);
    clock.t = at('2026-05-01T09:00:30Z'); // back by an hour
    await clock.runUntil(at('2026-05-01T10:59:00Z'), s);
    assert.equal(ran.length, 1, 'the 10:00 slot again, or a catch-up, would be a duplicate');
    await clock.runUntil(at('2026-05-01T11:00:30Z'), s);
    await s.stop();
    assert.equal(ran.length, 2);
    assert.equal(store.runs('p1', 'hourly').lastSlot, '2026-05-01T11:00:00.000Z');
  });

  test('a 3-day outage (daemon down) gives one catch-up run when it starts, never a burst', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const clock = new FakeClock(at('2026-05-01T09:30:00Z'));
    const ran: string[] = [];
    const first = scheduler(clock, ran);
    await first.start();
    await clock.runUntil(at('2026-05-01T12:30:00Z'), first);
    await first.stop();
    assert.equal(ran.length, 3);
    clock.t = at('2026-05-04T12:30:00Z');
    const second = scheduler(clock, ran);
    await second.start();
    await second.idle();
    assert.equal(ran.length, 4);
    assert.equal(store.runs('p1', 'hourly').last?.trigger, 'catch-up');
    await clock.runUntil(at('2026-05-04T13:30:00Z'), second);
    await second.stop();
    assert.equal(ran.length, 5, 'then the next slot, 13:00, as usual');
  });

  test('a run overlapping the previous one for that container is skipped and recorded', async () => {
    const sched = await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const clock = new FakeClock(at('2026-05-01T09:30:00Z'));
    let release!: () => void;
    const slow = new Promise<void>((r) => { release = r; });
    let started = 0;
    const s = new Scheduler(store, async () => { started++; await slow; return { snapshot: 'x' }; }, { clock, maxSleepMs: 60_000 });
    await s.start();
    // Let the 10:00 run start and hang; do not wait for it.
    clock.t = at('2026-05-01T10:00:01Z');
    s.tick();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(started, 1);
    // A manual run meanwhile takes the same path, and is skipped the same way.
    const manual = await executeRun(store, sched, 'manual', async () => ({}), { clock });
    assert.equal(manual.outcome, 'skipped');
    assert.match(manual.why ?? '', /previous run for p1 was still going/);
    release();
    await s.idle();
    assert.equal(store.runs('p1', 'hourly').last?.outcome, 'ok');
    await s.stop();
  });

  test('a failed run is recorded with its reason and counted', async () => {
    const sched = await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const r = await executeRun(store, sched, 'manual', async () => { throw new Error('pool full'); });
    assert.equal(r.outcome, 'failed');
    assert.equal(r.why, 'pool full');
    assert.equal(store.runs('p1', 'hourly').failures, 1);
  });
});

describe('schedules: restarts and doctor', () => {
  test('a run its process never finished (a killed daemon) is recorded as interrupted when the next one starts, and not run again', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    // A process that ran and is gone: its pid, reaped.
    const { spawnSync } = await import('node:child_process');
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const pid = Number(dead.stdout.trim());
    await store.updateRuns('p1', 'hourly', (r) => ({ ...r, lastSlot: '2026-05-01T10:00:00.000Z', running: { pid, startedAt: '2026-05-01T10:00:00.005Z', trigger: 'timer' } }));
    const clock = new FakeClock(at('2026-05-01T10:10:00Z'));
    const ran: string[] = [];
    const s = scheduler(clock, ran);
    await s.start();
    await s.idle();
    await s.stop();
    assert.deepEqual(ran, [], 'the 10:00 slot was handled');
    const r = store.runs('p1', 'hourly');
    assert.equal(r.last?.outcome, 'failed');
    assert.match(r.last?.why ?? '', /interrupted/);
    assert.equal(r.running, undefined);
    assert.equal(r.failures, 1);
  });

  test('doctor: a schedule whose newest backup is older than two periods is not ok', async () => {
    const { scheduleChecks } = await import('../../backup/doctor');
    const { SnapshotCatalog } = await import('../../storage');
    await addSchedule('0 * * * *', '2026-05-01T06:30:00Z', 'UTC');
    const now = at('2026-05-01T10:10:00Z');
    let [c] = scheduleChecks(root, now);
    assert.equal(c.ok, false);
    assert.match(c.detail, /no backup yet, schedule 4 h old, over two periods \(60 min\)/);
    fs.mkdirSync(root.containerDir('p1'), { recursive: true });
    await new SnapshotCatalog(root.containerDir('p1')).add({ name: 'hourly-1', createdAt: '2026-05-01T10:00:00.000Z', pool: 'default', handle: 'x', schedule: 'hourly' });
    [c] = scheduleChecks(root, now);
    assert.equal(c.ok, true, c.detail);
    [c] = scheduleChecks(root, at('2026-05-01T12:30:00Z'));
    assert.equal(c.ok, false);
    assert.match(c.detail, /newest backup 3 h old/);
  });
});

describe('schedules: input', () => {
  test('invalid cron expressions and zones are refused with one clear line', () => {
    assert.throws(() => parseCron('61 * * * *', 'UTC'), /invalid cron expression "61 \* \* \* \*": Invalid value for minute: 61/);
    assert.throws(() => parseCron('* * *', 'UTC'), /invalid cron expression/);
    assert.throws(() => parseCron('', 'UTC'), /empty/);
    assert.throws(() => parseCron('0 * * * *', 'Mars/Olympus'), /unknown time zone "Mars\/Olympus"/);
  });

  test('dueAt: nothing owed before the first slot; the newest missed slot is the one owed', () => {
    const created = at('2026-05-01T09:30:00Z');
    assert.equal(dueAt('0 * * * *', 'UTC', undefined, created, at('2026-05-01T09:59:00Z')).slot, undefined);
    const d = dueAt('0 * * * *', 'UTC', undefined, created, at('2026-05-01T13:10:00Z'));
    assert.equal(new Date(d.slot!).toISOString(), '2026-05-01T13:00:00.000Z');
    assert.equal(d.catchUp, true);
    assert.equal(new Date(d.next!).toISOString(), '2026-05-01T14:00:00.000Z');
  });

  test('a schedule is stored atomically, listed, refused twice, and removed', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    await assert.rejects(addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC'), /already has a schedule "hourly"/);
    assert.equal(store.list().length, 1);
    await store.remove('p1', 'hourly');
    assert.equal(store.list().length, 0);
    await assert.rejects(store.remove('p1', 'hourly'), /no schedule "hourly"/);
    assert.deepEqual(fs.readdirSync(store.dir).filter((f) => f.endsWith('.tmp')), []);
  });

  test('a schedule broken by hand is left out, reported, kept through other changes, and can be removed', async () => {
    await addSchedule('0 * * * *', '2026-05-01T09:30:00Z', 'UTC');
    const file = path.join(store.dir, 'schedules.json');
    const f = JSON.parse(fs.readFileSync(file, 'utf8'));
    f.schedules.push({ ...f.schedules[0], name: 'broken', cron: '99 * * * *' });
    fs.writeFileSync(file, JSON.stringify(f));
    assert.deepEqual(store.list().map((s) => s.name), ['hourly']);
    assert.match(store.rejected[0].why, /invalid cron expression "99/);
    await store.add(validateSchedule({ container: 'p2', name: 'daily', cron: '0 3 * * *', timeZone: 'UTC', keep: {} }));
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).schedules.length, 3, 'the broken one is not dropped by an add');
    await store.remove('p1', 'broken');
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).schedules.length, 2);
  });
});
