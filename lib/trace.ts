import fs = require('node:fs');

const enabled = process.env.TSVZ_TRACE === '1';

/**
 * TSVZ_TRACE=1: print where a command's time goes, as milliseconds since
 * the process started, one line per step on stderr.
 */
export function trace(step: string): void {
  if (enabled) fs.writeSync(2, `tsvz: trace ${performance.now().toFixed(1)} ms ${step}\n`);
}
