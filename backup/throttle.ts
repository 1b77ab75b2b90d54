import { Transform } from 'node:stream';

/**
 * A stream that passes at most `bytesPerSecond` on average: each chunk
 * waits until the bytes sent so far fit the rate since the start, on a
 * timer (the event loop goes on). The first burst of up to one second's
 * worth passes at once.
 */
export function throttle(bytesPerSecond: number, now: () => number = () => performance.now()): Transform {
  const start = now();
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      const due = start + ((sent - bytesPerSecond) / bytesPerSecond) * 1000;
      const wait = due - now();
      if (wait <= 0) return cb(null, chunk);
      setTimeout(() => cb(null, chunk), wait);
    },
  });
}
