import { pipeline, Readable, Transform } from 'node:stream';

/** How far one of a migration's transfers is (the CLI draws it). */
export interface TransferProgress {
  /** pages: post-copy's memory, pulled by the copy on the target. */
  what: 'files' | 'memory' | 'pages';
  bytes: number;
  /** What the transfer is expected to carry; an estimate it outgrew reads as what it carried so far. */
  total: number;
  /** Since the transfer began. */
  seconds: number;
  bytesPerSec: number;
  /** Seconds left at the rate so far. */
  etaSec?: number;
  done: boolean;
}

const REPORT_EVERY_MS = 250;

/** A transfer counted as it goes (`add`): `report` at most every 250 ms, and once at `end`. */
export function meter(what: TransferProgress['what'], total: number, report: (p: TransferProgress) => void): { add(n: number): void; end(): void } {
  const t0 = performance.now();
  let bytes = 0;
  let last = t0;
  const tell = (done: boolean) => {
    const seconds = (performance.now() - t0) / 1000;
    const bytesPerSec = seconds > 0 ? bytes / seconds : 0;
    const expected = Math.max(total, bytes);
    report({ what, bytes, total: expected, seconds, bytesPerSec, etaSec: bytesPerSec > 0 ? (expected - bytes) / bytesPerSec : undefined, done });
  };
  return {
    add(n) {
      bytes += n;
      const now = performance.now();
      if (now - last >= REPORT_EVERY_MS) {
        last = now;
        tell(false);
      }
    },
    end: () => tell(true),
  };
}

/** `body` counted as it is read (meter). */
export function metered(body: Readable, what: TransferProgress['what'], total: number, report?: (p: TransferProgress) => void): Readable {
  if (!report) return body;
  const m = meter(what, total, report);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      m.add(chunk.length);
      cb(null, chunk);
    },
    flush(cb) {
      m.end();
      cb();
    },
  });
  // An error on either side ends both: the reader sees the body's failure, a reader that stops ends the body.
  return pipeline(body, counter, () => undefined);
}
