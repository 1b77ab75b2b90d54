import { InvalidArgumentError } from './errors';

const MULTIPLIERS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Parse "512M", "1G", "65536" into bytes (binary units; an optional trailing "B" or "iB"). */
export function parseSize(text: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(String(text).trim());
  if (!m) throw new InvalidArgumentError(`invalid ${what} "${text}"`, 'use a number with an optional K, M, G or T suffix, e.g. 512M');
  const bytes = Math.floor(parseFloat(m[1]) * MULTIPLIERS[m[2].toUpperCase()]);
  if (bytes <= 0) throw new InvalidArgumentError(`${what} must be greater than zero`);
  return bytes;
}

export function parseCpus(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 1024) throw new InvalidArgumentError(`invalid --cpus "${text}"`, 'use a positive number such as 1 or 0.5');
  return n;
}

export function parsePositiveInt(text: string, what: string): number {
  if (!/^\d+$/.test(String(text).trim()) || Number(text) <= 0) throw new InvalidArgumentError(`invalid ${what} "${text}"`, 'use a positive integer');
  return Number(text);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parse "10m", "90s", "1h", "2d", "500ms" (a bare number is seconds) into milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(String(text).trim());
  const ms = m ? Math.round(parseFloat(m[1]) * DURATION_MS[m[2] ?? '']) : NaN;
  if (!(ms > 0)) throw new InvalidArgumentError(`invalid ${what} "${text}"`, 'use a number with s, m, h or d, e.g. 10m');
  return ms;
}
