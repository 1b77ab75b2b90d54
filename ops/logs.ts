import { once } from 'node:events';
import fs = require('node:fs');
import { Container } from '../runtime/container';
import { sleep } from '../lib/poll';

/** The console log turned into plain text lines (the pty writes CRLF). */
function clean(text: string): string {
  return text.replace(/\r\n/g, '\n');
}

/** Last `n` lines of a text. */
export function lastLines(text: string, n: number): string {
  if (n <= 0) return '';
  const lines = text.split('\n');
  const trailing = lines[lines.length - 1] === '' ? 1 : 0;
  return lines.slice(Math.max(0, lines.length - trailing - n)).join('\n');
}

/**
 * What the container's init wrote to its console, written by the monitor so
 * it keeps flowing after the CLI exits. With `follow`, keeps printing until
 * the container stops (or the caller's signal aborts).
 */
export async function streamLogs(c: Container, out: NodeJS.WritableStream, opts: { follow?: boolean; tail?: number; signal?: AbortSignal } = {}): Promise<void> {
  // The monitor keeps console.log to a size; what it pushed out is in console.log.1.
  const older = `${c.paths.consoleLog}.1`;
  const { data, size } = opts.tail !== undefined ? readTail(c.paths.consoleLog, opts.tail) : readAll(c.paths.consoleLog);
  let offset = size;
  let before: Buffer = Buffer.alloc(0);
  if (opts.tail === undefined) before = readAll(older).data;
  else if (lineCount(data) <= opts.tail) before = readTail(older, opts.tail).data;
  const body = clean(Buffer.concat([before, data]).toString('utf8'));
  await put(out, opts.tail !== undefined ? lastLines(body, opts.tail) : body, opts.signal);
  if (!opts.follow) return;
  let pending = '';
  for (;;) {
    if (opts.signal?.aborted) return;
    const running = c.state().status === 'running';
    let size = 0;
    try { size = fs.statSync(c.paths.consoleLog).size; } catch { /* not yet */ }
    if (size < offset) offset = 0; // truncated behind our back: start over
    if (size > offset) {
      const fd = fs.openSync(c.paths.consoleLog, 'r');
      const buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
      fs.closeSync(fd);
      offset = size;
      // Hold back a trailing CR so a CRLF split across reads is still cleaned.
      const chunk = pending + buf.toString('utf8');
      pending = chunk.endsWith('\r') ? '\r' : '';
      await put(out, clean(pending ? chunk.slice(0, -1) : chunk), opts.signal);
      continue;
    }
    if (!running) return;
    await sleep(100);
  }
}

/**
 * Write and wait while the reader is slow (a pipe, a remote caller): what
 * is not yet read is never more than the stream's own buffer.
 */
async function put(out: NodeJS.WritableStream, text: string, signal?: AbortSignal): Promise<void> {
  if (text.length === 0 || out.write(text)) return;
  await once(out, 'drain', { signal }).catch((err: unknown) => {
    if (!signal?.aborted) throw err;
  });
}

function readAll(file: string): { data: Buffer; size: number } {
  try {
    const data = fs.readFileSync(file);
    return { data, size: data.length };
  } catch {
    return { data: Buffer.alloc(0), size: 0 }; // no log yet
  }
}

const TAIL_CHUNK = 64 * 1024;

function lineCount(data: Buffer): number {
  let n = 0;
  for (const byte of data) if (byte === 0x0a) n++;
  return n;
}

/**
 * The end of a log holding at least `lines` lines (more when it's short), read
 * backwards a chunk at a time: `--tail 20` of a long-running container's log
 * does not read all of it. `size`: where following continues.
 */
export function readTail(file: string, lines: number): { data: Buffer; size: number } {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return { data: Buffer.alloc(0), size: 0 }; }
  try {
    const size = fs.fstatSync(fd).size;
    const chunks: Buffer[] = [];
    let start = size;
    let newlines = 0;
    // One newline more than asked: the line before the first one kept must end too.
    while (start > 0 && newlines <= lines) {
      const len = Math.min(TAIL_CHUNK, start);
      start -= len;
      const chunk = Buffer.alloc(len);
      fs.readSync(fd, chunk, 0, len, start);
      chunks.unshift(chunk);
      newlines += lineCount(chunk);
    }
    return { data: Buffer.concat(chunks), size };
  } finally {
    fs.closeSync(fd);
  }
}
