import { CorruptDataError } from '../lib/errors';
import type { CheckResult, MigrationResult } from './source';
import { MAX_PRE_COPY_ROUNDS } from '../checkpoint/archive';

const MAX_RESULT = 64 * 1024;

/**
 * The result a remote daemon sent for `tsvz --remote HOST migrate`: JSON
 * of a MigrationResult (or a check's), each field printed here checked for
 * its type first; anything else is ECORRUPT.
 */
export function parseRunResult(json: string, check: boolean, peer: string): MigrationResult | CheckResult {
  const bad = (why: string) => new CorruptDataError(`${peer} sent a migration result that ${why}`);
  if (json.length > MAX_RESULT) throw bad('is too large');
  let v: Record<string, unknown>;
  try { v = JSON.parse(json) as Record<string, unknown>; } catch { throw bad('is not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('is not an object');
  const numbers = check ? ['filesBytes'] : ['frozenMs', 'totalMs', 'filesBytes', 'changedFilesBytes', 'imagesBytes', 'restoreMs'];
  const strings = check ? ['name', 'to', 'filesFormat'] : ['id', 'name', 'to', 'mode', 'filesFormat'];
  for (const k of numbers) if (typeof v[k] !== 'number' || !Number.isFinite(v[k])) throw bad(`has no number ${k}`);
  for (const k of strings) if (typeof v[k] !== 'string') throw bad(`has no ${k}`);
  if (v.lastPageMs !== undefined && typeof v.lastPageMs !== 'number') throw bad('has a lastPageMs that is no number');
  if (v.targetCriu !== undefined && typeof v.targetCriu !== 'string') throw bad('has a targetCriu that is no string');
  const rounds = v.preCopyRounds;
  if (rounds !== undefined) {
    const round = (r: unknown) => typeof r === 'object' && r !== null && ['round', 'pagesWritten', 'bytes', 'ms', 'frozenMs'].every((k) => Number.isFinite((r as Record<string, unknown>)[k]));
    if (!Array.isArray(rounds) || rounds.length > MAX_PRE_COPY_ROUNDS || !rounds.every(round)) throw bad('has preCopyRounds that are not its rounds');
  }
  return v as unknown as MigrationResult | CheckResult;
}
