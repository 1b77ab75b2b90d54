import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { lastLines, readTail } from '../../ops/logs';

describe('logs --tail reads the end of the log only', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-logs-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tail = (file: string, n: number) => lastLines(readTail(file, n).data.toString('utf8'), n);

  it('a long log: the last lines, from a few chunks at its end', () => {
    const file = path.join(dir, 'long.log');
    const lines = Array.from({ length: 200_000 }, (_, i) => `line ${i} ${'é'.repeat(i % 7)}`);
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const r = readTail(file, 3);
    assert.equal(r.size, fs.statSync(file).size);
    assert.ok(r.data.length < 200 * 1024, `read ${r.data.length} bytes of ${r.size}`);
    assert.equal(tail(file, 3), lines.slice(-3).join('\n') + '\n');
    assert.equal(tail(file, 5000), lines.slice(-5000).join('\n') + '\n');
  });

  it('a short log, one without a final newline, a missing one', () => {
    const short = path.join(dir, 'short.log');
    fs.writeFileSync(short, 'a\nb\n');
    assert.equal(tail(short, 10), 'a\nb\n');
    const open = path.join(dir, 'open.log');
    fs.writeFileSync(open, 'a\nb\nc');
    assert.equal(tail(open, 1), 'c');
    assert.deepEqual(readTail(path.join(dir, 'missing.log'), 3), { data: Buffer.alloc(0), size: 0 });
  });
});
