import { sleepSync } from './proc';

/**
 * Fault injection for tests (as CRIU's CRIU_FAULT): when TSVZ_FAULT names
 * this point, the process stops here for good, so a test can SIGKILL it at
 * a known step and check that `destroy --force` still cleans everything.
 */
export function faultPoint(name: string): void {
  if (!faultArmed(name)) return;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  for (;;) sleepSync(1000);
}

/**
 * Fault injection that pauses instead of stopping: when TSVZ_FAULT names this
 * point, wait TSVZ_FAULT_MS (default 3000) ms, so a test can break something
 * (e.g. kill CRIU) while the operation is in the middle of a step.
 */
export async function faultPause(name: string): Promise<void> {
  if (!faultArmed(name)) return;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.TSVZ_FAULT_MS ?? 3000)));
}

/** Is TSVZ_FAULT set to this point (so the operation should give it a chance to fire)? */
function faultArmed(name: string): boolean {
  return process.env.TSVZ_FAULT === name;
}
