import fs = require('node:fs');
import path = require('node:path');
import { Cron } from 'croner';
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { compareText } from '../lib/compare';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { withLock } from '../lib/lock';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import { KeepPolicy, validateKeepPolicy, wallClock } from './retention';

/**
 * Backup schedules: ROOT/backups/schedules.json (what to do) and
 * ROOT/backups/runs.json (what happened: the last cron slot handled and the
 * last run of each schedule), both written atomically under
 * ROOT/locks/backup-schedules.lock, so the daemon and a CLI's `schedule
 * run` never lose each other's records.
 */

export const MODES = ['snapshot', 'suspend', 'stop'] as const;
export type BackupMode = (typeof MODES)[number];

export interface Schedule {
  container: string;
  name: string;
  cron: string;
  /** IANA zone the cron expression and the retention periods are read in. */
  timeZone: string;
  keep: KeepPolicy;
  mode: BackupMode;
  stateful: boolean;
  /** Remote (remotes.json) each new snapshot is shipped to. */
  to?: string;
  /** Bytes a second a send may use (undefined: no limit). */
  bandwidth?: number;
  /** ISO 8601: slots before it are not owed. */
  createdAt: string;
}

export interface RunRecord {
  outcome: 'ok' | 'failed' | 'skipped';
  /** Why it failed or was skipped. */
  why?: string;
  /** The failure's error code (lib/errors.ts). */
  code?: string;
  startedAt: string;
  durationMs: number;
  /** 'timer', 'catch-up' (a slot missed while the daemon was down) or 'manual'. */
  trigger: 'timer' | 'catch-up' | 'manual';
  snapshot?: string;
  bytesShipped?: number;
  pruned?: string[];
}

export interface ScheduleRuns {
  /** ISO 8601 of the newest cron slot handled (run, skipped or failed): never handled twice. */
  lastSlot?: string;
  last?: RunRecord;
  lastSuccessAt?: string;
  failures: number;
  /** A run under way: its process, so one that died mid-run is recorded as interrupted. */
  running?: { pid: number; startedAt: string; trigger: RunRecord['trigger'] };
}

interface SchedulesFile { version: 1; schedules: Schedule[] }
interface RunsFile { version: 1; runs: Record<string, ScheduleRuns> }

/** A schedule's name: the prefix of its snapshots' names, so shorter than a snapshot name. */
export const MAX_SCHEDULE_NAME = 24;

export function scheduleKey(container: string, name: string): string {
  return `${container}/${name}`;
}

/** A cron expression croner accepts (5 or 6 fields), in `timeZone`: refused with croner's reason otherwise. */
export function parseCron(expr: string, timeZone: string): Cron {
  if (typeof expr !== 'string' || expr.trim() === '') throw new InvalidArgumentError('the cron expression is empty', "e.g. --cron '0 * * * *' (hourly)");
  wallClock(timeZone); // an unknown zone gets tsvz's message, not croner's
  let cron: Cron;
  try {
    cron = new Cron(expr, { timezone: timeZone, paused: true, legacyMode: true });
  } catch (err) {
    throw new InvalidArgumentError(`invalid cron expression "${expr}": ${(err as Error).message.replace(/^CronPattern: /, '')}`, 'five fields: minute hour day-of-month month day-of-week');
  }
  if (cron.nextRun(new Date()) === null) throw new InvalidArgumentError(`cron expression "${expr}" never fires`);
  return cron;
}

export function hostTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** A schedule read from the file: every field checked, since a hand-edited file is input too. */
export function validateSchedule(s: Partial<Schedule>): Schedule {
  const container = validateName(s.container ?? '');
  const name = validateName(s.name ?? '', 'schedule');
  if (name.length > MAX_SCHEDULE_NAME) throw new InvalidArgumentError(`schedule name "${name}" is longer than ${MAX_SCHEDULE_NAME} characters`);
  const timeZone = s.timeZone ?? hostTimeZone();
  parseCron(s.cron ?? '', timeZone);
  const mode = s.mode ?? 'snapshot';
  if (!(MODES as readonly string[]).includes(mode)) throw new InvalidArgumentError(`unknown mode "${mode}"`, `modes: ${MODES.join(', ')}`);
  const keep = validateKeepPolicy(s.keep ?? {});
  if (s.to !== undefined) validateName(s.to, 'remote');
  if (s.bandwidth !== undefined && (!Number.isSafeInteger(s.bandwidth) || s.bandwidth < 1024)) throw new InvalidArgumentError('--bwlimit must be at least 1K a second');
  if (s.stateful && mode === 'stop') throw new InvalidArgumentError('--stateful needs the container running: not with --mode stop');
  return { container, name, cron: s.cron!, timeZone, keep, mode, stateful: s.stateful === true, ...(s.to ? { to: s.to } : {}), ...(s.bandwidth !== undefined ? { bandwidth: s.bandwidth } : {}), createdAt: s.createdAt ?? new Date().toISOString() };
}

export class ScheduleStore {
  constructor(readonly root: Root) {}

  get dir(): string { return path.join(this.root.dir, 'backups'); }
  private get file(): string { return path.join(this.dir, 'schedules.json'); }
  private get runsFile(): string { return path.join(this.dir, 'runs.json'); }
  private get lockFile(): string { return path.join(this.root.locksDir, 'backup-schedules.lock'); }

  /** The valid schedules; one the file holds that fails the checks (edited by hand) is left out, and in `rejected`. */
  list(): Schedule[] {
    const out: Schedule[] = [];
    this.rejected = [];
    for (const raw of this.raw()) {
      try {
        out.push(validateSchedule(raw));
      } catch (err) {
        this.rejected.push({ key: `${String(raw?.container)}/${String(raw?.name)}`, why: (err as Error).message });
      }
    }
    return out;
  }

  /** What the last list() left out, and why. */
  rejected: { key: string; why: string }[] = [];

  private raw(): Partial<Schedule>[] {
    const f = readJsonIfExists<SchedulesFile>(this.file);
    return Array.isArray(f?.schedules) ? f.schedules : [];
  }

  get(container: string, name: string): Schedule {
    const s = this.list().find((x) => x.container === container && x.name === name);
    if (!s) throw new NotFoundError(`container ${container} has no schedule "${name}"`, 'see `tsvz schedule list`');
    return s;
  }

  add(s: Schedule): Promise<void> {
    return this.locked(async () => {
      const all = this.raw();
      if (all.some((x) => x.container === s.container && x.name === s.name)) {
        throw new AlreadyExistsError(`container ${s.container} already has a schedule "${s.name}"`, `remove it first: \`tsvz schedule rm ${s.container} ${s.name}\``);
      }
      await this.save([...all as Schedule[], validateSchedule(s)]);
    });
  }

  remove(container: string, name: string): Promise<void> {
    return this.locked(async () => {
      const all = this.raw();
      if (!all.some((x) => x.container === container && x.name === name)) this.get(container, name); // "no schedule"
      await this.save(all.filter((x) => !(x.container === container && x.name === name)) as Schedule[]);
      const runs = this.allRuns();
      delete runs[scheduleKey(container, name)];
      await writeJsonAtomic(this.runsFile, { version: 1, runs } satisfies RunsFile);
    });
  }

  runs(container: string, name: string): ScheduleRuns {
    return this.allRuns()[scheduleKey(container, name)] ?? { failures: 0 };
  }

  allRuns(): Record<string, ScheduleRuns> {
    return readJsonIfExists<RunsFile>(this.runsFile)?.runs ?? {};
  }

  /** Change one schedule's run record (read, change and write under the lock). */
  updateRuns(container: string, name: string, change: (r: ScheduleRuns) => ScheduleRuns): Promise<ScheduleRuns> {
    return this.locked(async () => {
      const runs = this.allRuns();
      const key = scheduleKey(container, name);
      const next = change(runs[key] ?? { failures: 0 });
      runs[key] = next;
      await writeJsonAtomic(this.runsFile, { version: 1, runs } satisfies RunsFile);
      return next;
    });
  }

  private save(schedules: Schedule[]): Promise<void> {
    const sorted = [...schedules].sort((a, b) => compareText(a.container, b.container) || compareText(a.name, b.name));
    return writeJsonAtomic(this.file, { version: 1, schedules: sorted } satisfies SchedulesFile);
  }

  private locked<T>(body: () => Promise<T>): Promise<T> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.root.locksDir, { recursive: true, mode: 0o700 });
    return withLock(this.lockFile, 'the backup schedules', 10_000, body);
  }
}
