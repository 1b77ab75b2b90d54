import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { after, describe, it } from 'node:test';
import { findCommand, run } from '../../lib/process';
import { loopbackUp } from '../../runtime/loopback';
import { sleep } from '../../lib/poll';

/*
 * Root only: loopbackUp sets lo up in a fresh network namespace (an
 * `unshare --net sleep` process) and leaves this process in its own.
 */

const reason = process.getuid?.() !== 0 ? 'needs root' : !findCommand('unshare') || !findCommand('nsenter') ? 'unshare/nsenter missing (util-linux)' : undefined;
if (reason) console.log(`loopback tests skipped: ${reason}`);

const netns = (pid: number | 'thread-self') => fs.readlinkSync(`/proc/${pid}/ns/net`);

describe('loopbackUp', { skip: reason }, () => {
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });

  async function isolated(): Promise<number> {
    const child = spawn(findCommand('unshare')!, ['--net', 'sleep', '60'], { stdio: 'ignore' });
    procs.push(child);
    for (let i = 0; i < 200; i++) {
      // unshare(1) unshares, then execs sleep in place: the spawned pid is the one inside.
      if (netns(child.pid!) !== netns('thread-self')) return child.pid!;
      await sleep(5);
    }
    throw new Error('unshare --net did not enter a new network namespace');
  }

  const loState = async (pid: number) => (await run('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link', 'show', 'lo'])).stdout;

  it('brings lo up inside the other namespace and comes back to its own', async () => {
    const pid = await isolated();
    const own = netns('thread-self');
    assert.doesNotMatch(await loState(pid), /[<,]UP[,>]/, 'a new namespace starts with lo down');
    loopbackUp(pid);
    assert.match(await loState(pid), /[<,]UP[,>]/);
    assert.equal(netns('thread-self'), own);
    loopbackUp(pid); // already up: no error
    assert.equal(netns('thread-self'), own);
  });

  it('a pid that is gone is a SystemError, and this process stays where it was', () => {
    const own = netns('thread-self');
    assert.throws(() => loopbackUp(2 ** 22 + 1), (err: unknown) => err instanceof Error && /ns\/net|ENOENT/.test(err.message));
    assert.equal(netns('thread-self'), own);
  });

  it('lo in the host namespace is already up: setting it again changes nothing', async () => {
    const own = netns('thread-self');
    loopbackUp(process.pid);
    assert.equal(netns('thread-self'), own);
    assert.match((await run('ip', ['-o', 'link', 'show', 'lo'])).stdout, /[<,]UP[,>]/);
  });
});
