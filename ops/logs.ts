import { EventEmitter, once } from 'node:events';
import fs = require('node:fs');
import { sleep } from '../lib/poll';
import type { Container } from '../runtime/container';

/**
 * `tsvz logs`: what the container's init wrote to its console. The monitor
 * (native/monitor.c) appends it to console.log and, past a size, renames
 * that to console.log.1 (replacing the one before) and starts a new one. A
 * reader follows files, not names: it holds the file it reads by its fd and
 * inode, reads it to its end when a rotation has moved it, then goes on to
 * the next one, so no line is lost or spliced. It streams in chunks, so the
 * memory it needs does not grow with the log.
 */

const CHUNK = 64 * 1024;
const FOLLOW_POLL_MS = 100;

/** Last `n` lines of a text. */
export function lastLines(text: string, n: number): string {
  if (n <= 0) return '';
  const lines = text.split('\n');
  const trailing = lines[lines.length - 1] === '' ? 1 : 0;
  return lines.slice(Math.max(0, lines.length - trailing - n)).join('\n');
}

/** The console log as plain text lines (the pty writes CRLF); a CR at a chunk's end waits for the next chunk. */
class CrlfCleaner {
  private pendingCr = false;

  clean(chunk: Buffer): string {
    let text = (this.pendingCr ? '\r' : '') + chunk.toString('latin1');
    this.pendingCr = text.endsWith('\r');
    if (this.pendingCr) text = text.slice(0, -1);
    return text.replace(/\r\n/g, '\n');
  }

  flush(): string {
    const rest = this.pendingCr ? '\r' : '';
    this.pendingCr = false;
    return rest;
  }
}

/**
 * Write, and wait while the reader is slow (a pipe, a remote caller): what is
 * not yet read is never more than the stream's own buffer. An abort (the
 * remote caller went away) ends the wait.
 */
async function writeOut(out: NodeJS.WritableStream, text: string, signal?: AbortSignal): Promise<void> {
  if (text.length === 0) return;
  // latin1 round-trips every byte: the console's bytes go out as they came in.
  if (out.write(Buffer.from(text, 'latin1'))) return;
  await once(out as unknown as EventEmitter, 'drain', { signal }).catch((err: unknown) => {
    if (!signal?.aborted) throw err;
  });
}

interface OpenLog {
  fd: number;
  ino: number;
  offset: number;
}

function openLog(file: string, offset = 0): OpenLog | undefined {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return undefined; }
  return { fd, ino: fs.fstatSync(fd).ino, offset };
}

function inodeOf(file: string): number | undefined {
  try { return fs.statSync(file).ino; } catch { return undefined; }
}

/** Copy what `log` holds from its offset to its current end; returns whether anything was read. */
async function drain(log: OpenLog, cleaner: CrlfCleaner, out: NodeJS.WritableStream, signal?: AbortSignal): Promise<boolean> {
  const buf = Buffer.alloc(CHUNK);
  let any = false;
  for (;;) {
    const n = await new Promise<number>((resolve, reject) => fs.read(log.fd, buf, 0, CHUNK, log.offset, (err, bytes) => (err ? reject(err) : resolve(bytes))));
    if (n === 0) return any;
    any = true;
    log.offset += n;
    if (signal?.aborted) return any;
    await writeOut(out, cleaner.clean(buf.subarray(0, n)), signal);
  }
}

/**
 * What init wrote, written to `out`. `tail`: only the last N lines. With
 * `follow`, keeps writing until the container stops (or `signal` aborts).
 */
export async function streamLogs(c: Container, out: NodeJS.WritableStream, opts: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): Promise<void> {
  const current = c.paths.consoleLog;
  const older = `${current}.1`;
  const cleaner = new CrlfCleaner();
  let log: OpenLog | undefined;

  if (opts.tail !== undefined) {
    // Read backwards, a chunk at a time: --tail 20 of a long log does not read all of it.
    const cur = readTail(current, opts.tail);
    const before = lineCount(cur.data) <= opts.tail ? readTail(older, opts.tail).data : Buffer.alloc(0);
    await writeOut(out, lastLines(new CrlfCleaner().clean(Buffer.concat([before, cur.data])), opts.tail), opts.signal);
    log = cur.ino === undefined ? undefined : openLogAt(current, cur.ino, cur.size);
  } else {
    const old = openLog(older);
    if (old) {
      await drain(old, cleaner, out, opts.signal);
      fs.closeSync(old.fd);
    }
    log = openLog(current);
    if (log) await drain(log, cleaner, out, opts.signal);
  }
  if (!opts.follow) {
    if (log) fs.closeSync(log.fd);
    await writeOut(out, cleaner.flush(), opts.signal);
    return;
  }
  try {
    for (;;) {
      if (opts.signal?.aborted) return;
      const running = c.state().status === 'running';
      if (!log) log = openLog(current);
      if (log && (await drain(log, cleaner, out, opts.signal))) continue;
      const now = inodeOf(current);
      if (log && now !== undefined && now !== log.ino) {
        // Rotated: the file held is console.log.1 now. The monitor renames it before it
        // makes the new one, and writes to it no more after: read its rest, then move on.
        // If a second rotation replaced it too, the one between them is .1.
        await drain(log, cleaner, out, opts.signal);
        const between = inodeOf(older) !== log.ino ? openLog(older) : undefined;
        fs.closeSync(log.fd);
        if (between && between.ino !== now) {
          await drain(between, cleaner, out, opts.signal);
          fs.closeSync(between.fd);
        } else if (between) {
          fs.closeSync(between.fd);
        }
        log = openLog(current);
        continue;
      }
      if (!running) return;
      await sleep(FOLLOW_POLL_MS);
    }
  } finally {
    if (log) fs.closeSync(log.fd);
    await writeOut(out, cleaner.flush(), opts.signal);
  }
}

/** The log `file` opened at `offset`, if it is still the file whose inode is `ino`. */
function openLogAt(file: string, ino: number, offset: number): OpenLog | undefined {
  const log = openLog(file, offset);
  if (log && log.ino !== ino) {
    // Rotated since the tail was read: follow from the start of the new one.
    log.offset = 0;
  }
  return log;
}

function lineCount(data: Buffer): number {
  let n = 0;
  for (const byte of data) if (byte === 0x0a) n++;
  return n;
}

/**
 * The end of a log holding at least `lines` lines (more when it's short), read
 * backwards a chunk at a time. `size` and `ino`: where following continues.
 */
export function readTail(file: string, lines: number): { data: Buffer; size: number; ino?: number } {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return { data: Buffer.alloc(0), size: 0 }; }
  try {
    const st = fs.fstatSync(fd);
    const size = st.size;
    const chunks: Buffer[] = [];
    let start = size;
    let newlines = 0;
    // One newline more than asked: the line before the first one kept must end too.
    while (start > 0 && newlines <= lines) {
      const len = Math.min(CHUNK, start);
      start -= len;
      const chunk = Buffer.alloc(len);
      fs.readSync(fd, chunk, 0, len, start);
      chunks.unshift(chunk);
      newlines += lineCount(chunk);
    }
    return { data: Buffer.concat(chunks), size, ino: st.ino };
  } finally {
    fs.closeSync(fd);
  }
}
