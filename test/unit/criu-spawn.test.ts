import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { spawnWithFds } from '../../checkpoint/criu/spawn';

describe('spawnWithFds (how criu swrk is started)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-spawn-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the child our fds as 3, 4, ... and reports its exit code and stderr', async () => {
    const a = fs.openSync(path.join(dir, 'a'), 'w');
    const b = fs.openSync(path.join(dir, 'b'), 'w');
    try {
      const child = spawnWithFds('sh', ['-c', 'echo to-a >&3; echo to-b >&4; echo oops >&2; exit 7'], [a, b]);
      assert.ok(child.pid > 0);
      assert.deepEqual(await child.exited, { code: 7, signal: null });
      assert.equal(child.stderrTail(), 'oops\n');
    } finally {
      fs.closeSync(a);
      fs.closeSync(b);
    }
    assert.equal(fs.readFileSync(path.join(dir, 'a'), 'utf8'), 'to-a\n');
    assert.equal(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'to-b\n');
  });

  it('passes each fd to the number asked, whatever order ours are in', async () => {
    const x = fs.openSync(path.join(dir, 'x'), 'w');
    const y = fs.openSync(path.join(dir, 'y'), 'w');
    try {
      const child = spawnWithFds('sh', ['-c', 'echo first >&3; echo second >&4'], [y, x]);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      fs.closeSync(x);
      fs.closeSync(y);
    }
    assert.equal(fs.readFileSync(path.join(dir, 'y'), 'utf8'), 'first\n');
    assert.equal(fs.readFileSync(path.join(dir, 'x'), 'utf8'), 'second\n');
  });

  it('passes nothing else: only 0-2 and the fds asked for are open in the child', async () => {
    const out = path.join(dir, 'fds');
    const f = fs.openSync(out, 'w');
    try {
      const child = spawnWithFds('sh', ['-c', 'ls /proc/self/fd >&3'], [f]);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      fs.closeSync(f);
    }
    const fds = fs.readFileSync(out, 'utf8').trim().split('\n').map(Number);
    for (const fd of [0, 1, 2, 3]) assert.ok(fds.includes(fd), `fd ${fd} open in the child: ${fds.join(' ')}`);
    // Beyond those: fds this test process itself inherited without close-on-exec (as any spawn passes them on),
    // and the directory ls is reading.
    const others = fds.filter((fd) => fd > 3 && !inheritedByUs().includes(fd));
    assert.ok(others.length <= 1, `open in the child: ${fds.join(' ')}`);
  });

  it('resets signal handling: what node ignores (SIGPIPE) is default again', async () => {
    const out = path.join(dir, 'status');
    const f = fs.openSync(out, 'w');
    try {
      const child = spawnWithFds('sh', ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status >&3'], [f]);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      fs.closeSync(f);
    }
    const status = fs.readFileSync(out, 'utf8');
    assert.match(status, /^SigBlk:\s*0+$/m, status);
    // sh itself may ignore a signal or two; SIGPIPE (bit 13) must not be one.
    const ign = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
    assert.equal(ign & (1n << 12n), 0n, status);
  });

  it('reports the signal that killed the child', async () => {
    const child = spawnWithFds('sh', ['-c', 'kill -TERM $$'], []);
    assert.deepEqual(await child.exited, { code: null, signal: 'SIGTERM' });
  });

  it('throws an ENOENT error for a program that does not exist', () => {
    assert.throws(() => spawnWithFds(path.join(dir, 'no-such-criu'), [], []), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  });
});

/** Our fds that lack close-on-exec (O_CLOEXEC is 02000000 in fdinfo's octal flags). */
function inheritedByUs(): number[] {
  return fs.readdirSync('/proc/self/fdinfo').map(Number).filter((fd) => {
    try {
      const flags = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1];
      return (parseInt(flags, 8) & 0o2000000) === 0;
    } catch {
      return false;
    }
  });
}
