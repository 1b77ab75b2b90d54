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

/**
 * For a loop of short synchronous steps (making hundreds of symlinks,
 * walking a tree): call the returned function after each step and await
 * what it returns; every `sliceMs` it yields to the event loop, so a long
 * loop never holds a daemon's other calls for longer than a slice.
 */
export function timeSlicer(sliceMs = 2): () => Promise<void> | undefined {
  let sliceEnd = performance.now() + sliceMs;
  return () => {
    if (performance.now() < sliceEnd) return undefined;
    return new Promise<void>((resolve) => setImmediate(() => {
      sliceEnd = performance.now() + sliceMs;
      resolve();
    }));
  };
}
