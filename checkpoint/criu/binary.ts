import fs = require('node:fs');

/** Where tsvz looks for CRIU: $TSVZ_CRIU, then the one setup-host builds, then PATH. */
export function criuBinary(): string {
  if (process.env.TSVZ_CRIU) return process.env.TSVZ_CRIU;
  return fs.existsSync('/usr/local/sbin/criu') ? '/usr/local/sbin/criu' : 'criu';
}
