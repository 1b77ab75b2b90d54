import { sleepSync } from './proc';

/**
 * Fault injection for tests (as CRIU's CRIU_FAULT): when TSVZ_FAULT names
 * this point, the process stops here for good, so a test can SIGKILL it at
 * a known step and check that `destroy --force` still cleans everything.
 */
export function faultPoint(name: string): void {
  if (process.env.TSVZ_FAULT !== name) return;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  for (;;) sleepSync(1000);
}
