import { InvalidArgumentError } from '../lib/errors';

/**
 * Retention with Proxmox VE's prune-backups semantics (pve-storage's
 * prune_mark_backup_group): the rules run in a fixed order over the
 * snapshots, newest first. Each rule keeps the newest snapshot of each of
 * its next N periods (hours, days, ISO weeks, months, years) that holds
 * one; a period that already holds a snapshot kept by an earlier rule is
 * skipped, and the older snapshots of a period a rule kept are marked for
 * removal there and then, so no later rule can keep them. Protected
 * snapshots are never removed and never counted. No rule keeps all.
 */

export const KEEP_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type KeepRule = (typeof KEEP_RULES)[number];
export type KeepPolicy = Partial<Record<KeepRule, number>>;

export interface RetentionItem {
  name: string;
  /** ISO 8601 */
  createdAt: string;
  protected?: boolean;
}

/** Why a snapshot stays: a keep rule, protection, no rule at all, or a hold from outside the policy. */
export type KeepReason = KeepRule | 'protected' | 'all' | 'newest' | `held: ${string}`;

export interface RetentionDecision {
  name: string;
  createdAt: string;
  action: 'keep' | 'remove';
  /** For a kept one: the rule that keeps it. */
  reason?: KeepReason;
}

/** The upper bound of one rule: no schedule needs more, and it keeps a typo from reading as "forever". */
const MAX_KEEP = 100_000;

/**
 * Parse "last=3,daily=7" (also Proxmox's "keep-last=3,keep-daily=7"). An
 * unknown rule, a repeated one or a count that is not a positive integer is
 * refused: a zero would read as "keep none" to some and "off" to others.
 */
export function parseKeepPolicy(text: string): KeepPolicy {
  const policy: KeepPolicy = {};
  if (typeof text !== 'string' || text.trim() === '') throw new InvalidArgumentError('--keep is empty', `give rules like last=3,daily=7 (rules: ${KEEP_RULES.join(', ')})`);
  for (const part of text.split(',')) {
    const m = /^\s*(?:keep-)?([a-z]+)\s*=\s*(\S*)\s*$/.exec(part);
    if (!m) throw new InvalidArgumentError(`keep rule "${part.trim()}" is not RULE=N`, `rules: ${KEEP_RULES.join(', ')}`);
    const rule = m[1] as KeepRule;
    if (!(KEEP_RULES as readonly string[]).includes(rule)) throw new InvalidArgumentError(`unknown keep rule "${m[1]}"`, `rules: ${KEEP_RULES.join(', ')}`);
    if (policy[rule] !== undefined) throw new InvalidArgumentError(`keep rule "${rule}" is given twice`);
    policy[rule] = parseCount(rule, m[2]);
  }
  return policy;
}

/** A policy read back from a file or a peer: the same checks as parseKeepPolicy. */
export function validateKeepPolicy(value: unknown): KeepPolicy {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidArgumentError('a keep policy is an object of rules');
  const policy: KeepPolicy = {};
  for (const [rule, n] of Object.entries(value as Record<string, unknown>)) {
    if (!(KEEP_RULES as readonly string[]).includes(rule)) throw new InvalidArgumentError(`unknown keep rule "${rule}"`, `rules: ${KEEP_RULES.join(', ')}`);
    policy[rule as KeepRule] = parseCount(rule, String(n));
  }
  return policy;
}

function parseCount(rule: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError(`keep rule "${rule}" needs a whole number, not "${text}"`);
  const n = Number(text);
  if (n === 0) throw new InvalidArgumentError(`keep rule "${rule}=0" keeps nothing`, 'leave the rule out instead');
  if (n > MAX_KEEP) throw new InvalidArgumentError(`keep rule "${rule}=${n}" is over ${MAX_KEEP}`);
  return n;
}

/** "last=3,daily=7" in the fixed order; "" for keep-all. */
export function formatKeepPolicy(policy: KeepPolicy): string {
  return KEEP_RULES.filter((r) => policy[r] !== undefined).map((r) => `${r}=${policy[r]}`).join(',');
}

export interface RetentionOptions {
  /** The time zone periods are counted in (default: the host's). */
  timeZone?: string;
  /** Snapshots kept whatever the policy says (being sent, a target's base, the origin of a clone): name → why. */
  holds?: ReadonlyMap<string, string>;
}

/**
 * What the policy keeps and removes, newest first. The newest snapshot is
 * always kept (the policy keeps it anyway whenever it has a rule); held
 * ones are kept after the policy ran, so a hold never shifts what the rules
 * count.
 */
export function applyRetention(items: readonly RetentionItem[], policy: KeepPolicy, opts: RetentionOptions = {}): RetentionDecision[] {
  const periods = periodFunctions(opts.timeZone);
  const list = [...items]
    .map((it) => ({ it, t: Date.parse(it.createdAt) }))
    .sort((a, b) => b.t - a.t || (a.it.name < b.it.name ? 1 : a.it.name > b.it.name ? -1 : 0));
  for (const e of list) if (Number.isNaN(e.t)) throw new InvalidArgumentError(`snapshot ${e.it.name} has no valid creation time ("${e.it.createdAt}")`);
  type Mark = { action: 'keep' | 'remove'; reason?: KeepReason } | undefined;
  const marks: Mark[] = list.map((e) => (e.it.protected ? { action: 'keep', reason: 'protected' } : undefined));
  const anyRule = KEEP_RULES.some((r) => (policy[r] ?? 0) > 0);
  if (!anyRule) {
    for (let i = 0; i < list.length; i++) marks[i] ??= { action: 'keep', reason: 'all' };
  } else {
    for (const rule of KEEP_RULES) {
      const count = policy[rule] ?? 0;
      if (count <= 0) continue;
      const id = periods[rule];
      const already = new Set<string>();
      list.forEach((e, i) => { if (marks[i]?.action === 'keep' && marks[i]?.reason !== 'protected') already.add(id(e.t, e.it.name)); });
      const fresh = new Set<string>();
      for (let i = 0; i < list.length; i++) {
        if (marks[i] !== undefined) continue;
        const p = id(list[i].t, list[i].it.name);
        if (already.has(p)) continue;
        if (!fresh.has(p)) {
          if (fresh.size >= count) break;
          fresh.add(p);
          marks[i] = { action: 'keep', reason: rule };
        } else {
          marks[i] = { action: 'remove' };
        }
      }
    }
  }
  const decisions: RetentionDecision[] = list.map((e, i) => {
    const m = marks[i] ?? { action: 'remove' as const };
    return { name: e.it.name, createdAt: e.it.createdAt, action: m.action, ...(m.reason ? { reason: m.reason } : {}) };
  });
  if (decisions.length > 0 && decisions[0].action === 'remove') decisions[0] = { ...decisions[0], action: 'keep', reason: 'newest' };
  for (const d of decisions) {
    const why = opts.holds?.get(d.name);
    if (why !== undefined && d.action === 'remove') Object.assign(d, { action: 'keep', reason: `held: ${why}` });
  }
  return decisions;
}

type PeriodId = (t: number, name: string) => string;

/** The period each rule counts in, as a string id, in `timeZone`'s wall time. */
function periodFunctions(timeZone?: string): Record<KeepRule, PeriodId> {
  const parts = wallClock(timeZone);
  return {
    last: (_t, name) => `snapshot:${name}`,
    hourly: (t) => { const p = parts(t); return `${p.year}-${p.month}-${p.day}T${p.hour}`; },
    daily: (t) => { const p = parts(t); return `${p.year}-${p.month}-${p.day}`; },
    weekly: (t) => { const p = parts(t); const w = isoWeek(p.year, p.month, p.day); return `${w.year}-W${w.week}`; },
    monthly: (t) => { const p = parts(t); return `${p.year}-${p.month}`; },
    yearly: (t) => `${parts(t).year}`,
  };
}

interface WallParts { year: number; month: number; day: number; hour: number }

/** Wall-clock fields of an instant in a zone (Intl: the zone rules the host's ICU knows). */
export function wallClock(timeZone?: string): (t: number) => WallParts {
  let fmt: Intl.DateTimeFormat;
  try {
    fmt = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', hourCycle: 'h23' });
  } catch {
    throw new InvalidArgumentError(`unknown time zone "${timeZone}"`, 'use an IANA name such as Europe/Berlin or UTC');
  }
  return (t) => {
    const out: Record<string, number> = {};
    for (const p of fmt.formatToParts(new Date(t))) if (p.type !== 'literal') out[p.type] = Number(p.value);
    return { year: out.year, month: out.month, day: out.day, hour: out.hour };
  };
}

/** ISO 8601 week and week-based year of a calendar date (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const d = new Date(Date.UTC(year, month - 1, day));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const isoYear = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(isoYear, 0, 1)) / 86_400_000 + 1) / 7);
  return { year: isoYear, week };
}
