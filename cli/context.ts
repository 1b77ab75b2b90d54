import type { Command } from 'commander';
import type { Root } from '../runtime/paths';
import { print } from './output';

/** The global options every command sees. */
export interface GlobalOptions {
  root?: string;
  debug?: boolean;
}

/** The root chosen by --root / TSVZ_ROOT / the default. */
export function rootOf(cmd: Command): Root {
  const { Root: RootClass } = require('../runtime/paths') as typeof import('../runtime/paths');
  return RootClass.fromOptions((cmd.optsWithGlobals() as GlobalOptions).root);
}

/** Print JSON or a table. */
export function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2) + '\n');
}

export function printTable(rows: string[][]): void {
  if (rows.length === 0) return;
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const row of rows) print(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ') + '\n');
}
