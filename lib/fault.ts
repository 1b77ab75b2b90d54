/**
 * Fault injection for tests (as CRIU's CRIU_FAULT). When TSVZ_FAULT names a
 * point, the operation stops there (faultPoint) or pauses (faultPause), so a
 * test can SIGKILL it, or break something, at a known step. Both wait on a
 * timer, never spin: in a daemon the other operations go on meanwhile.
 */

/** Stop here for good (until killed) when TSVZ_FAULT names this point. */
export async function faultPoint(name: string): Promise<void> {
  if (!faultArmed(name)) return;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  await new Promise<never>(() => setInterval(() => undefined, 60_000));
}

/** Pause TSVZ_FAULT_MS (default 3000) ms when TSVZ_FAULT names this point. */
export async function faultPause(name: string): Promise<void> {
  if (!faultArmed(name)) return;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.TSVZ_FAULT_MS ?? 3000)));
}

let tampered = false;

/**
 * When TSVZ_FAULT names this point: the first chunk of 32 KiB or more
 * passes with its middle byte flipped (what a link that corrupts data, or
 * a lying peer, delivers); every other chunk passes as it is.
 */
export function faultTamper(name: string, data: Buffer): Buffer {
  if (tampered || data.length < 32 * 1024 || !faultArmed(name)) return data;
  tampered = true;
  process.stderr.write(`tsvz: fault point ${name} reached\n`);
  const copy = Buffer.from(data);
  copy[copy.length >> 1] ^= 0xff;
  return copy;
}

/** Read once: faultTamper runs for every chunk of memory a migration sends, and the environment is slow to read. */
const armed = process.env.TSVZ_FAULT;

function faultArmed(name: string): boolean {
  return armed === name;
}
