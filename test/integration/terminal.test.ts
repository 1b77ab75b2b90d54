import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { rootSkipReason, sleep, TestRoot, TSVZ } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped terminal tests: ${skip}`);

/**
 * Run a tsvz command on a real pty (util-linux `script`), typing `keys`
 * with pauses in between; resolves with everything the terminal showed.
 */
function onPty(root: string, args: string[], keys: string[], pauseMs = 400): Promise<{ out: string; code: number | null }> {
  const cmd = [process.execPath, TSVZ, '--root', root, ...args].map((a) => `'${a}'`).join(' ');
  const p = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  return (async () => {
    for (const k of keys) {
      await sleep(pauseMs);
      p.stdin.write(k);
    }
    const code = await new Promise<number | null>((res) => {
      const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
      p.on('exit', (c) => { clearTimeout(timer); res(c); });
    });
    return { out, code };
  })();
}

describe('console and exec -t', { skip }, () => {
  const t = new TestRoot();
  before(() => {
    t.ok(['create', 'tty1']);
    t.ok(['start', 'tty1']);
  });
  after(() => t.cleanup());

  test('exec -t gives the command a pty of the container', async () => {
    const r = await onPty(t.dir, ['exec', '-t', 'tty1', '--', 'sh', '-c', 'tty; exit 5'], []);
    assert.match(r.out, /\/dev\/pts\/\d+/);
    assert.equal(r.code, 5);
  });

  test('exec -t runs an interactive shell', async () => {
    const r = await onPty(t.dir, ['exec', '-t', 'tty1', '--', 'sh'], ['echo answer-$((40+2))\r', 'exit\r']);
    assert.match(r.out, /answer-42/);
    assert.equal(r.code, 0);
  });

  test('console attaches to the init console and detaches with Ctrl-a q', async () => {
    // busybox init's askfirst shell: Enter activates it.
    const r = await onPty(t.dir, ['console', 'tty1'], ['\r', 'echo from-console-$((6*7))\r', '\x01q'], 600);
    assert.match(r.out, /Connected to the console of tty1/);
    assert.match(r.out, /from-console-42/);
    assert.match(r.out, /Detached from tty1/);
    assert.equal(r.code, 0);
    assert.equal(t.info('tty1').state, 'running', 'detaching leaves the container running');
    assert.match(t.ok(['logs', 'tty1']), /from-console-42/);
  });
});
