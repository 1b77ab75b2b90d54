import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { eventually, rootSkipReason, sleep, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped log rotation tests: ${skip}`);

const LINES = 6_000_000;
/** Small, so the log rotates many times while it is followed. */
const LOG_MAX = 1 << 20;

/** The largest resident size of `pid` seen while it runs, in MiB. */
function watchRss(pid: number): () => number {
  let max = 0;
  const timer = setInterval(() => {
    try {
      const kb = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      max = Math.max(max, kb / 1024);
    } catch { /* gone */ }
  }, 5);
  return () => { clearInterval(timer); return max; };
}

describe('logs across rotation', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  test(`logs -f of ${LINES} numbered lines over many rotations: none missing, doubled or spliced`, async (tc) => {
    t.ok(['create', 'chatty', '--init', `sh -c 'while [ ! -e /go ]; do sleep 0.05; done; seq 1 ${LINES}; sleep 1'`]);
    t.ok(['start', 'chatty'], { env: { TSVZ_CONSOLE_LOG_MAX: String(LOG_MAX) } });
    const follower = t.spawn(['logs', '-f', 'chatty']);
    let expected = 1;
    let bad = 0;
    let firstBad = '';
    let rest = '';
    follower.stdout!.setEncoding('latin1');
    follower.stdout!.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        if (!/^\d+$/.test(line)) continue; // the rcS banner and the like
        if (Number(line) !== expected) {
          bad++;
          firstBad ||= `expected ${expected}, got ${JSON.stringify(line)}`;
          expected = Number(line);
        }
        expected++;
      }
    });
    const ended = new Promise<number | null>((resolve) => follower.once('exit', resolve));
    await sleep(300); // the follower is reading before a line is written
    fs.writeFileSync(path.join(t.dir, 'containers', 'chatty', 'rootfs', 'go'), '');
    assert.equal(await ended, 0, 'logs -f ends when the container does');
    const rotations = fs.readdirSync(path.join(t.dir, 'containers', 'chatty')).filter((f) => f.startsWith('console.log'));
    tc.diagnostic(`read up to ${expected - 1}; ${bad} breaks; files now ${rotations.join(' ')}`);
    assert.equal(bad, 0, firstBad);
    assert.equal(expected - 1, LINES, 'every line arrived');
  });

  test('logs prints a log many times its memory with bounded memory', async (tc) => {
    t.ok(['create', 'big', '--init', `sh -c 'seq 1 2000000; sleep 1000'`]);
    t.ok(['start', 'big'], { env: { TSVZ_CONSOLE_LOG_MAX: String(64 << 20) } });
    const log = path.join(t.dir, 'containers', 'big', 'console.log');
    assert.ok(await eventually(() => { try { return fs.statSync(log).size > 14 << 20; } catch { return false; } }, 60_000), 'the log grew past 14 MiB');
    const reader = t.spawn(['logs', 'big']);
    const peak = watchRss(reader.pid!);
    let bytes = 0;
    reader.stdout!.on('data', (d: Buffer) => { bytes += d.length; });
    assert.equal(await new Promise((resolve) => reader.once('exit', resolve)), 0);
    const mib = peak();
    assert.ok(bytes > 12 << 20, `printed ${bytes} bytes`); // less than the log: CRLF becomes LF
    tc.diagnostic(`peak resident size ${mib.toFixed(0)} MiB for ${(bytes / 2 ** 20).toFixed(0)} MiB of log`);
    assert.ok(mib < 120, `peak resident size ${mib.toFixed(0)} MiB`);
  });
});
