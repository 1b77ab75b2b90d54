import * as net from 'node:net';

/**
 * A client that keeps one TCP connection to HOST:PORT (an echo server) and
 * sends a numbered line every 10 ms, until SIGTERM; then prints JSON: lines
 * sent and echoed back, the longest time without an answer, and the error
 * that ended the connection, if any. Usage: node tcp-client.js HOST PORT
 * (prints "connected" on stderr once the connection is up).
 */
const [host, port] = process.argv.slice(2);
let sent = 0;
let echoed = 0;
let lastAnswer = performance.now();
let maxGapMs = 0;
let error: string | undefined;
let buffered = '';

const sock = net.connect({ host, port: Number(port) }, () => {
  process.stderr.write('connected\n');
  lastAnswer = performance.now();
  const timer = setInterval(() => {
    if (sock.destroyed) return clearInterval(timer);
    sock.write(`${++sent}\n`);
    maxGapMs = Math.max(maxGapMs, performance.now() - lastAnswer);
  }, 10);
});
sock.setEncoding('utf8');
sock.on('data', (d: string) => {
  buffered += d;
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) {
    if (Number(line) !== echoed + 1) error ??= `echo out of order: got ${line} after ${echoed}`;
    echoed = Number(line);
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - lastAnswer);
    lastAnswer = now;
  }
});
sock.on('error', (err) => { error ??= err.message; });
sock.on('close', () => { error ??= 'the connection closed'; });
process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ sent, echoed, maxGapMs: Math.round(maxGapMs), error })}\n`);
  process.exit(0);
});
