import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { eventually, rootSkipReason, TestRoot } from '../helpers/cli';

const skip = rootSkipReason();
if (skip) console.log(`# skipped exec session tests: ${skip}`);

/** ps inside: "PID PPID PGID SID COMM" per process (busybox's ps has no -o for these; /proc has them). */
const PROCS = 'for d in /proc/[0-9]*; do set -- $(cat $d/stat 2>/dev/null | sed "s/.*) //"); echo "${d#/proc/} $2 $3 $4 $(cat $d/comm)"; done';

describe('tsvz exec: the command is a session of its own inside the container', { skip }, () => {
  const t = new TestRoot();
  after(() => t.cleanup());

  const procs = (c: string) => t.ok(['exec', c, '--', 'sh', '-c', PROCS]).trim().split('\n').map((l) => {
    const [pid, ppid, pgid, sid, comm] = l.split(' ');
    return { pid: Number(pid), ppid: Number(ppid), pgid: Number(pgid), sid: Number(sid), comm };
  });

  test('a background job started by exec outlives it, is checkpointed and restored, and keeps running', async () => {
    t.ok(['create', 'svc']);
    t.ok(['start', 'svc']);
    // The job's output stays inside: a host file or pipe it kept would be outside the container for CRIU.
    t.ok(['exec', 'svc', '--', 'sh', '-c', 'sleep 1000 </dev/null >/dev/null 2>&1 &']);
    const job = () => procs('svc').find((p) => p.comm === 'sleep');
    const before = job();
    assert.ok(before, 'the job runs after exec returned');
    // A session leader inside the pid namespace (its session and group are ids of the container's).
    const leader = procs('svc').find((p) => p.pid === before.sid);
    assert.ok(before.sid > 0 && (leader === undefined || leader.comm === 'sh'), `session ${before.sid}`);
    assert.notEqual(before.sid, 0);

    t.ok(['checkpoint', 'svc']);
    t.ok(['restore', 'svc']);
    const after = job();
    assert.ok(after, 'the job is back');
    assert.equal(after.pid, before.pid, 'same pid');
    assert.equal(after.sid, before.sid, 'same session');

    // And the job still answers to signals, then goes as asked.
    t.ok(['exec', 'svc', '--', 'kill', String(after.pid)]);
    assert.ok(await eventually(() => job() === undefined, 5000), 'the job ended on SIGTERM');
  });

  test('exec without -t passes its signals on to the command', async () => {
    const p = t.spawn(['exec', 'svc', '--', 'sh', '-c', 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 1; done']);
    let out = '';
    p.stdout!.on('data', (d) => { out += d; });
    assert.ok(await eventually(() => out.includes('ready'), 10_000));
    // The CLI's own process group: what a terminal's ^C or a supervisor's kill reaches.
    const execPid = Number(spawnSync('pgrep', ['-P', String(p.pid), 'tsvz-exec'], { encoding: 'utf8' }).stdout.trim());
    assert.ok(execPid > 0, 'tsvz-exec runs under the CLI');
    process.kill(execPid, 'SIGTERM');
    const code = await new Promise<number | null>((res) => p.on('exit', res));
    assert.ok(out.includes('got-term'), out);
    assert.equal(code, 7);
  });
});
