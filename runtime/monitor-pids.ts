import fs = require('node:fs');
import { nativeBinary } from './paths';

/*
 * Apart from monitor.ts, which spawns monitors (and so loads child_process):
 * stop, destroy and every reconcile look for monitors, and need none of that.
 */

/** Pids of monitors serving container dir `dir` (found even when no state recorded them). */
export function findMonitorPids(dir: string): number[] {
  const bin = nativeBinary('tsvz-monitor');
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try { argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    if (!argv[0]?.endsWith('tsvz-monitor') && argv[0] !== bin) continue;
    const i = argv.indexOf('--dir');
    if (i >= 0 && argv[i + 1] === dir) found.push(Number(entry));
  }
  return found;
}
