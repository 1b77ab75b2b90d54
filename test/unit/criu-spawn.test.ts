import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { spawnWithFds } from '../../lib/spawn-fds';

describe('spawnWithFds (how criu swrk is started)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsvz-test-spawn-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Runs `sh -c script` with fresh files named `names` as its fds 3, 4, ...; their contents after it exits. */
  async function shWithFiles(script: string, names: string[]): Promise<{ exit: unknown; stderr: string; out: string[] }> {
    const fds = names.map((n) => fs.openSync(path.join(dir, n), 'w'));
    try {
      const child = spawnWithFds('sh', ['-c', script], fds);
      assert.ok(child.pid > 0);
      const exit = await child.exited;
      return { exit, stderr: child.stderrTail(), out: names.map((n) => fs.readFileSync(path.join(dir, n), 'utf8')) };
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }

  it('gives the child our fds as 3, 4, ... and reports its exit code and stderr', async () => {
    const r = await shWithFiles('echo to-a >&3; echo to-b >&4; echo oops >&2; exit 7', ['a', 'b']);
    assert.deepEqual(r.exit, { code: 7, signal: null });
    assert.equal(r.stderr, 'oops\n');
    assert.deepEqual(r.out, ['to-a\n', 'to-b\n']);
  });

  it('passes nothing else: only 0-2 and the fds asked for are open in the child', async () => {
    const r = await shWithFiles('ls /proc/self/fd >&3', ['fds']);
    assert.deepEqual(r.exit, { code: 0, signal: null });
    const fds = r.out[0].trim().split('\n').map(Number);
    for (const fd of [0, 1, 2, 3]) assert.ok(fds.includes(fd), `fd ${fd} open in the child: ${fds.join(' ')}`);
    // Beyond those: fds this test process itself inherited without close-on-exec (as any spawn passes them on),
    // and the directory ls is reading.
    const others = fds.filter((fd) => fd > 3 && !inheritedByUs().includes(fd));
    assert.ok(others.length <= 1, `open in the child: ${fds.join(' ')}`);
  });

  it('resets signal handling: what node ignores (SIGPIPE) is default again', async () => {
    const r = await shWithFiles('grep -E "^Sig(Ign|Blk)" /proc/self/status >&3', ['status']);
    assert.deepEqual(r.exit, { code: 0, signal: null });
    const status = r.out[0];
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
