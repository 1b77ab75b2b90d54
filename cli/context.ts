import type { Command } from 'commander';
import type { Root } from '../lib/root';
import type { Container } from '../runtime/container';
import { print } from './output';

/** The global options every command sees. */
export interface GlobalOptions {
  root?: string;
  remote?: string;
  debug?: boolean;
}

/** The root chosen by --root / TSVZ_ROOT / the default. */
export function rootOf(cmd: Command): Root {
  const { Root: RootClass } = require('../lib/root') as typeof import('../lib/root');
  return RootClass.fromOptions((cmd.optsWithGlobals() as GlobalOptions).root);
}

/** The existing container `name` under the command's root ("no such container" otherwise). */
export function openContainer(cmd: Command, name: string): Container {
  const { Container: ContainerClass } = require('../runtime/container') as typeof import('../runtime/container');
  return ContainerClass.open(rootOf(cmd), name);
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
