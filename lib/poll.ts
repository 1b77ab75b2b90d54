/**
 * Waiting without blocking the event loop: every wait in tsvz (a process
 * leaving, a cgroup freezing, a lock coming free) polls through here, first
 * often (most conditions settle within a few ms), then backing off.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface PollOptions {
  timeoutMs: number;
  /** First delay (ms); each next one is `factor` times longer, up to `maxMs`. */
  firstMs?: number;
  maxMs?: number;
  factor?: number;
}

/** Poll `cond` until it holds (true) or `timeoutMs` passed (false). */
export async function pollUntil(cond: () => boolean | Promise<boolean>, opts: PollOptions): Promise<boolean> {
  const deadline = performance.now() + opts.timeoutMs;
  const max = opts.maxMs ?? 50;
  const factor = opts.factor ?? 1.5;
  for (let delay = opts.firstMs ?? 1; ; delay = Math.min(delay * factor, max)) {
    if (await cond()) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    await sleep(Math.min(delay, left));
  }
}
