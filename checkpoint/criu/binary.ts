import { withSystemPath } from '../../lib/process';
import fs = require('node:fs');

/** Where tsvz looks for CRIU: $TSVZ_CRIU, then the one setup-host builds, then PATH. */
export function criuBinary(): string {
  if (process.env.TSVZ_CRIU) return process.env.TSVZ_CRIU;
  return fs.existsSync('/usr/local/sbin/criu') ? '/usr/local/sbin/criu' : 'criu';
}

/** CRIU's environment: the caller's, with the tools CRIU runs (tar, ip) found in the system's directories. */
export function criuEnv(): NodeJS.ProcessEnv {
  return withSystemPath(process.env);
}
