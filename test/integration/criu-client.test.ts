import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as protobuf from 'protobufjs';
import { CriuClient } from '../../checkpoint/criu/client';
import { CriuError } from '../../checkpoint/criu/errors';
import { requireCriu } from '../../checkpoint/criu/version';
import { NotSupportedError } from '../../lib/errors';
import { sleep } from '../../lib/poll';
import { REPO } from '../helpers/cli';

const PROTO_PATH = path.join(REPO, 'proto', 'criu-rpc.proto');

/*
 * Against the real CRIU (needs root). Each dump/restore test starts its own
 * counting shell (see startTree) as the init of a new pid namespace and a
 * session leader: CRIU refuses a tree whose session leader is outside it.
 */
const CRIU_PROTO = '/usr/local/share/tsvz/criu-rpc.proto';
const client = new CriuClient();
const skip =
  process.getuid?.() !== 0 ? 'needs root: CRIU dumps and restores processes'
  : spawnSync(client.criuPath, ['--version']).error ? `${client.criuPath} is not installed (scripts/setup-host builds it)`
  : false;

const dir = `/tmp/tsvz-test-${randomBytes(4).toString('hex')}`;
const children: ChildProcess[] = [];
const pids: number[] = [];
const fds: number[] = [];

/** Ours (its command line names the test dir) and still running. */
function alive(pid: number): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    return state !== 'Z' && state !== 'X' && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

async function until<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(20)) {
    const v = probe();
    if (v !== undefined) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The count in file; undefined before the first write and while echo rewrites it (empty). */
function counter(file: string): number | undefined {
  const n = fs.existsSync(file) ? parseInt(fs.readFileSync(file, 'utf8'), 10) : NaN;
  return Number.isNaN(n) ? undefined : n;
}

/** Waits until the counter passes `above`, returns the value seen. */
function counterAbove(file: string, above: number): Promise<number> {
  return until(`${file} > ${above}`, () => {
    const n = counter(file);
    return n !== undefined && n > above ? n : undefined;
  });
}

/** The host pid of the shell that is init of its pid namespace and counts into `file`. */
function findInit(file: string): number | undefined {
  for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const status = fs.readFileSync(`/proc/${entry}/status`, 'utf8');
      if (/^Name:\s*sh$/m.test(status) && /^NSpid:\s*\d+\s+1$/m.test(status) && fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(file)) {
        return Number(entry);
      }
    } catch {
      // exited while we looked
    }
  }
  return undefined;
}

interface Tree {
  pid: number;
  file: string;
  /** A value the counter had before any dump. */
  started: number;
}

/**
 * A shell counting into <dir>/<name> every 50 ms and printing the count, as
 * init of a new pid namespace. Its stdio is
 * - 'null': /dev/null, in a new net namespace too (so CRIU locks and unlocks the network);
 * - 'pty': a pty held by script(1), made its controlling terminal;
 * - 'pipe': stdout is a pipe to a cat outside the tree.
 */
async function startTree(name: string, stdio: 'null' | 'pty' | 'pipe' = 'null'): Promise<Tree> {
  const file = path.join(dir, name);
  const loop = `i=0; while :; do i=$((i+1)); echo $i; echo $i > ${file}; sleep 0.05; done`;
  const child =
    stdio === 'pty' ? spawn('script', ['-qfc', `unshare --pid --fork setsid -c sh -c '${loop}'`, '/dev/null'], { stdio: 'ignore' })
    : stdio === 'pipe' ? spawn('sh', ['-c', `unshare --pid --fork setsid sh -c '${loop}' | cat >/dev/null`], { stdio: 'ignore' })
    : spawn('unshare', ['--pid', '--net', '--fork', 'setsid', 'sh', '-c', loop], { stdio: 'ignore' });
  children.push(child);
  const pid = await until('the counting shell', () => findInit(file));
  pids.push(pid);
  const started = await counterAbove(file, 10); // so a restart from 1 can't pass for a continuation
  return { pid, file, started };
}

/** The numbers a restored tree printed to fd (a pty master or a FIFO we hold), read off the main thread. */
async function printed(fd: number): Promise<number[]> {
  const buf = Buffer.alloc(4096);
  const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))));
  return (buf.toString('utf8', 0, n).match(/\d+/g) ?? []).map(Number);
}

/** What the counter says now; the file is empty while echo rewrites it (or if a dump caught it then). */
function lastCount(tree: Tree): number {
  return counter(tree.file) ?? tree.started;
}

/** Runs body with the images dir <dir>/<name> open, as CRIU wants it. */
async function withImages<T>(name: string, body: (fd: number) => Promise<T>): Promise<T> {
  const images = path.join(dir, name);
  fs.mkdirSync(images);
  const fd = fs.openSync(images, 'r');
  try {
    return await body(fd);
  } finally {
    fs.closeSync(fd);
  }
}

describe('CRIU RPC client against the real CRIU', { skip, timeout: 120_000 }, () => {
  before(() => fs.mkdirSync(dir));

  after(() => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL'); // init of its pid ns: takes the ns down
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("our criu-rpc.proto has CRIU's field numbers and types", { skip: !fs.existsSync(CRIU_PROTO) && `${CRIU_PROTO} missing` }, () => {
    const ours = protobuf.parse(fs.readFileSync(PROTO_PATH, 'utf8'), { keepCase: true }).root;
    const theirs = protobuf.parse(fs.readFileSync(CRIU_PROTO, 'utf8'), { keepCase: true }).root;
    for (const t of ours.nestedArray) {
      if (t instanceof protobuf.Enum) {
        const other = theirs.lookupEnum(t.name);
        for (const [name, value] of Object.entries(t.values)) assert.equal(other.values[name], value, `${t.name}.${name}`);
      } else if (t instanceof protobuf.Type) {
        const other = theirs.lookupType(t.name);
        for (const f of t.fieldsArray) {
          const g = other.fields[f.name];
          assert.ok(g, `${t.name}.${f.name} is not in CRIU's proto`);
          assert.deepEqual([g.id, g.type, g.rule, g.required], [f.id, f.type, f.rule, f.required], `${t.name}.${f.name}`);
        }
      }
    }
  });

  it('VERSION over RPC is at least 4.1', async () => {
    const v = await requireCriu('4.1', client);
    assert.ok(v.major > 4 || (v.major === 4 && v.minor >= 1), JSON.stringify(v));
    await assert.rejects(requireCriu('99.0', client), NotSupportedError);
  });

  it('CHECK succeeds', async () => {
    await client.check();
  });

  it('FEATURE_CHECK answers each feature', async () => {
    const f = await client.featureCheck({ memTrack: true, lazyPages: true, pidfdStore: true });
    for (const k of ['memTrack', 'lazyPages', 'pidfdStore'] as const) assert.equal(typeof f[k], 'boolean', k);
  });

  it('dumps a tree, which stops, and restores it counting on; notify hooks fire', async () => {
    const tree = await startTree('counter-round-trip');
    await withImages('img-round-trip', async (imagesDirFd) => {
      const seen: string[] = [];
      const resp = await client.dump(
        { imagesDirFd, pid: tree.pid, leaveRunning: false, shellJob: false, notifyScripts: true },
        { onNotify: (script) => void seen.push(script) },
      );
      assert.equal(resp.success, true);
      assert.ok(seen.includes('network-lock') && seen.includes('post-dump'), seen.join(' '));

      await until('the dumped tree to exit', () => (alive(tree.pid) ? undefined : true));
      const frozen = lastCount(tree);
      const content = fs.readFileSync(tree.file, 'utf8');
      await sleep(200);
      assert.equal(fs.readFileSync(tree.file, 'utf8'), content, 'nothing counts while dumped');

      const notes: { script: string; pid?: number }[] = [];
      const pid = await client.restore(
        { imagesDirFd, rstSibling: true, notifyScripts: true },
        { onNotify: (script, ctx) => void notes.push({ script, pid: ctx.pid }) },
      );
      pids.push(pid);
      const scripts = notes.map((n) => n.script);
      for (const s of ['setup-namespaces', 'post-restore', 'network-unlock']) assert.ok(scripts.includes(s), `${s} in ${scripts.join(' ')}`);
      assert.equal(notes.find((n) => n.script === 'post-restore')?.pid, pid);
      assert.ok(alive(pid));
      const first = await counterAbove(tree.file, frozen);
      await counterAbove(tree.file, first);
    });
  });

  it('hands the orphan pty master over with SCM_RIGHTS; the restored shell writes to it', async () => {
    const tree = await startTree('counter-pty', 'pty');
    await withImages('img-pty', async (imagesDirFd) => {
      await client.dump({ imagesDirFd, pid: tree.pid, orphanPtsMaster: true });
      await until('the dumped tree to exit', () => (alive(tree.pid) ? undefined : true));
      const frozen = lastCount(tree);

      let master: number | undefined;
      const pid = await client.restore(
        { imagesDirFd, rstSibling: true, orphanPtsMaster: true, notifyScripts: true },
        {
          onNotify: (script, ctx) => {
            if (script === 'orphan-pts-master') fds.push((master = ctx.fd!));
          },
        },
      );
      pids.push(pid);
      assert.ok(master !== undefined, 'orphan-pts-master came with an fd');
      assert.match(fs.readlinkSync(`/proc/self/fd/${master}`), /ptmx$/);
      await counterAbove(tree.file, frozen + 2);
      const numbers = await printed(master!);
      assert.ok(numbers.length > 0 && numbers[0] > frozen, `pty said ${numbers.join(' ')} after ${frozen}`);
    });
  });

  it('restore gives the tree the files named in inheritFd (a FIFO of ours for its stdout pipe)', async () => {
    const tree = await startTree('counter-pipe', 'pipe');
    const key = fs.readlinkSync(`/proc/${tree.pid}/fd/1`);
    assert.match(key, /^pipe:\[\d+\]$/);
    const fifo = path.join(dir, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const fd = fs.openSync(fifo, fs.constants.O_RDWR); // O_RDWR: opening doesn't wait for a writer
    fds.push(fd);
    await withImages('img-pipe', async (imagesDirFd) => {
      await client.dump({ imagesDirFd, pid: tree.pid });
      await until('the dumped tree to exit', () => (alive(tree.pid) ? undefined : true));
      const frozen = lastCount(tree);
      pids.push(await client.restore({ imagesDirFd, rstSibling: true, inheritFd: [{ key, fd }] }));
      await counterAbove(tree.file, frozen + 2);
      const numbers = await printed(fd);
      assert.ok(numbers.length > 0 && numbers[0] > frozen, `FIFO got ${numbers.join(' ')} after ${frozen}`);
    });
  });

  it("a failed dump raises CriuError with CRIU's Error line and the log path", async () => {
    const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    let pid = pidMax - 1;
    while (fs.existsSync(`/proc/${pid}`)) pid--;
    await withImages('img-missing', async (imagesDirFd) => {
      const err = await client.dump({ imagesDirFd, pid }).then(
        () => assert.fail('dump of a missing pid succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof CriuError, String(err));
      const log = path.join(dir, 'img-missing', 'dump.log');
      assert.equal(err.code, 'ECRIU');
      assert.equal(err.logPath, log);
      assert.ok(fs.existsSync(log));
      assert.match(err.message, /^criu dump failed: Error \([^)]+\): .+ \(log: \/tmp\/tsvz-test-[0-9a-f]+\/img-missing\/dump\.log\)$/);
      assert.ok(err.errorLines.length > 0 && err.message.includes(err.errorLines[0]));
      assert.ok(!err.message.includes('RLIMIT_NOFILE'), err.message);
      assert.equal(err.message.split('dump.log').length, 2, 'the log path is named once');
    });
  });

  it('a post-dump hook that throws makes CRIU resume the tree', async () => {
    const tree = await startTree('counter-rollback');
    await withImages('img-rollback', async (imagesDirFd) => {
      const err = await client
        .dump(
          { imagesDirFd, pid: tree.pid, leaveRunning: false, notifyScripts: true },
          {
            onNotify: (script) => {
              if (script === 'post-dump') throw new Error('target did not restore');
            },
          },
        )
        .then(
          () => assert.fail('dump succeeded'),
          (e: unknown) => e,
        );
      assert.ok(err instanceof CriuError, String(err));
      assert.match(err.message, /^criu dump failed: post-dump hook failed: target did not restore \(log: .*dump\.log\)$/);
      assert.ok(alive(tree.pid), 'the tree was resumed');
      await counterAbove(tree.file, lastCount(tree) + 2);
    });
  });
});
