import assert from 'node:assert/strict';
import { ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mountsUnder } from '../../lib/mounts';
import { Root } from '../../lib/root';
import { restoreStage } from '../../runtime/restore-stage';
import { leftoverCgroups, leftoverMonitors, rootSkipReason, sleep, TestRoot } from '../helpers/cli';
import { installMemhog } from '../helpers/memhog';

const skip = rootSkipReason() ?? (spawnSync('cc', ['--version']).status !== 0 ? 'no C compiler for the memhog fixture' : undefined);
if (skip) console.log(`# skipped crash-safety tests: ${skip}`);

/** Resolve once the child printed `text` on stderr (rejects if it exits first or `ms` pass). */
function stderrSays(child: ChildProcess, text: string, ms = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${ms} ms; stderr: ${seen}`)), ms);
    child.stderr!.on('data', (d) => {
      seen += d;
      if (seen.includes(text)) { clearTimeout(timer); resolve(); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited (${code}) before "${text}": ${seen}`)); });
  });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return; // it finished first
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Loop devices backed by a file under `dir`. */
function loopsUnder(dir: string): string[] {
  const out = spawnSync('losetup', ['-a'], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').filter((l) => l.includes(dir));
}

/** Processes whose command line names `dir` (a copy, a CRIU, a monitor left running). */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)) {
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { continue; }
    if (cmd.includes(dir) && !cmd.includes('--test')) found.push(`${e}: ${cmd.slice(0, 120)}`);
  }
  return found;
}

function journals(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[] = [];
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) (e.isDirectory() ? walk(path.join(d, e.name)) : out.push(path.join(d, e.name)));
  };
  walk(path.join(root, 'intents'));
  return out;
}

describe('a tsvz killed at a known step leaves nothing the next command does not finish or undo', { skip }, () => {
  const t = new TestRoot();
  const rootfs = (name: string) => path.join(t.dir, 'containers', name, 'rootfs');
  const fault = (point: string) => ({ TSVZ_FAULT: point, TSVZ_FAULT_MS: '600000' });
  const killedAt = async (args: string[], point: string) => {
    const child = t.spawn(args, fault(point));
    await stderrSays(child, `fault point ${point} reached`);
    await kill(child);
  };
  const checkpointDirs = (name: string) => { try { return fs.readdirSync(path.join(t.dir, 'containers', name, 'checkpoints')).sort(); } catch { return []; } };

  before(() => {
    t.ok(['create', 'k1', '--init', '/usr/bin/memhog 64']);
    installMemhog(rootfs('k1'));
    t.ok(['start', 'k1']);
  });
  after(() => t.cleanup());

  test('checkpoint killed while CRIU has the tree frozen: the container runs on, the name is free again', async () => {
    await killedAt(['checkpoint', 'k1', '--name', 'cp1'], 'checkpoint:frozen');
    assert.equal(t.info('k1').state, 'running', 'CRIU resumed the tree when its client went away');
    assert.deepEqual(JSON.parse(t.ok(['checkpoint', 'list', 'k1', '--json'])), []);
    assert.match(t.ok(['doctor']), /interrupted: container k1 .*checkpoint/, 'doctor names what was left');
    assert.equal(t.ok(['checkpoint', 'k1', '--name', 'cp1', '--leave-running']).trim(), 'cp1', 'a retry with the same name works');
    assert.deepEqual(checkpointDirs('k1'), ['cp1']);
    assert.deepEqual(journals(t.dir), []);
    t.ok(['checkpoint', 'rm', 'k1', 'cp1']);
  });

  test('checkpoint killed after CRIU wrote every image: the next command records it', async () => {
    await killedAt(['checkpoint', 'k1', '--name', 'cp2'], 'checkpoint:dumped');
    // CRIU was waiting on tsvz's answer: without it, it resumed the tree; the images are a whole checkpoint.
    t.ok(['snapshot', 'list', 'k1']); // any command that takes the container's lock
    const list = JSON.parse(t.ok(['checkpoint', 'list', 'k1', '--json'])) as { id: string; leaveRunning: boolean }[];
    assert.deepEqual(list.map((m) => m.id), ['cp2']);
    assert.equal(t.info('k1').state, 'running');
    assert.equal(list[0].leaveRunning, true);
    assert.deepEqual(journals(t.dir), []);
    t.ok(['checkpoint', 'rm', 'k1', 'cp2']);
  });

  test('restore killed with its /dev staged: nothing stays mounted, it still knows its checkpoint, a retry restores', async () => {
    const id = t.ok(['checkpoint', 'k1']).trim();
    await killedAt(['restore', 'k1'], 'restore:staged');
    const info = t.info('k1');
    assert.equal(info.state, 'stopped');
    assert.equal(info.checkpoint, id, 'the checkpoint it waits on is still known');
    t.ok(['restore', 'k1']);
    assert.equal(t.info('k1').state, 'running');
    const stage = restoreStage(new Root(t.dir).containerKey('k1')).dir;
    assert.deepEqual(mountsUnder(stage), []);
    assert.ok(!fs.existsSync(stage), 'the restore stage is gone');
    assert.deepEqual(journals(t.dir), []);
  });

  test('a snapshot killed while the container is frozen for the copy: the next command thaws it', async () => {
    await killedAt(['snapshot', 'k1', 's1'], 'copy:frozen');
    assert.equal(t.info('k1').state, 'frozen', 'left frozen by the killed copy');
    t.ok(['snapshot', 'list', 'k1']);
    assert.equal(t.info('k1').state, 'running');
    t.ok(['snapshot', 'k1', 's1']);
    assert.deepEqual((JSON.parse(t.ok(['snapshot', 'list', 'k1', '--json'])) as { name: string }[]).map((s) => s.name), ['s1']);
    assert.deepEqual(processesUnder(t.dir).filter((p) => / cp /.test(p)), [], 'no copy runs on');
  });

  test('a rollback killed after its copy: no copy runs on, a retry rolls back, no staging tree is left', async () => {
    t.ok(['stop', 'k1', '--timeout', '0']);
    fs.writeFileSync(path.join(rootfs('k1'), 'after-s1'), 'x');
    await killedAt(['snapshot', 'rollback', 'k1', 's1'], 'rollback:copied');
    assert.deepEqual(processesUnder(t.dir).filter((p) => / cp /.test(p)), []);
    t.ok(['snapshot', 'rollback', 'k1', 's1']);
    assert.ok(!fs.existsSync(path.join(rootfs('k1'), 'after-s1')), 'rolled back');
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers', 'k1')).filter((e) => e.startsWith('.')), [], 'no staging tree');
    t.ok(['start', 'k1']);
  });

  test('a clone killed half-way: not listed, and a clone of the same name works', async () => {
    await killedAt(['clone', 'k1', 'k2'], 'clone:copied');
    assert.ok(!(JSON.parse(t.ok(['list', '--json'])) as { name: string }[]).some((c) => c.name === 'k2'));
    assert.match(t.ok(['doctor']), /container k2 +half-created/);
    t.ok(['clone', 'k1', 'k2']);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers')).filter((e) => e.startsWith('.')), []);
    t.ok(['destroy', 'k2']);
  });

  test('pool create killed with its loop device attached: not listed, a create of the name works, rm --force leaves no loop', async () => {
    await killedAt(['pool', 'create', 'fast', '--driver', 'btrfs', '--size', '256M'], 'pool-create:attached');
    assert.equal(loopsUnder(t.dir).length, 1, 'the killed create left its loop device');
    assert.ok(!(JSON.parse(t.ok(['pool', 'list', '--json'])) as { name: string }[]).some((p) => p.name === 'fast'));
    t.ok(['pool', 'create', 'fast', '--driver', 'btrfs', '--size', '256M']);
    assert.equal(loopsUnder(t.dir).length, 1, 'the old one is gone, the new one attached');
    t.ok(['pool', 'rm', 'fast']);
    assert.deepEqual(loopsUnder(t.dir), []);
    // Killed again, then only rm --force: it removes the leftovers of a pool it does not know.
    await killedAt(['pool', 'create', 'fast', '--driver', 'btrfs', '--size', '256M'], 'pool-create:attached');
    t.ok(['pool', 'rm', '--force', 'fast']);
    assert.deepEqual(loopsUnder(t.dir), []);
    assert.ok(!fs.existsSync(path.join(t.dir, 'pools', 'fast')));
  });

  test('pool rm killed after unmounting: rm --force finishes it, no loop device stays', async () => {
    t.ok(['pool', 'create', 'slow', '--driver', 'btrfs', '--size', '256M']);
    await killedAt(['pool', 'rm', 'slow'], 'pool-rm:unmounted');
    assert.ok((JSON.parse(t.ok(['pool', 'list', '--json'])) as { name: string }[]).some((p) => p.name === 'slow'), 'still known');
    t.ok(['pool', 'rm', '--force', 'slow']);
    assert.deepEqual(loopsUnder(t.dir), []);
    assert.ok(!(JSON.parse(t.ok(['pool', 'list', '--json'])) as { name: string }[]).some((p) => p.name === 'slow'));
  });

  test('killed at a random moment, twenty times: every checkpoint is whole or gone, the container runs or waits on one', async (tc) => {
    const outcomes: Record<string, number> = {};
    for (let i = 0; i < 20; i++) {
      const child = t.spawn(['checkpoint', 'k1', '--name', `r${i}`]);
      await sleep(Math.floor(Math.random() * 700));
      await kill(child);
      // The next command on the container finishes or undoes what the kill left.
      t.ok(['snapshot', 'list', 'k1']);
      const info = t.info('k1');
      const ids = (JSON.parse(t.ok(['checkpoint', 'list', 'k1', '--json'])) as { id: string }[]).map((m) => m.id);
      assert.deepEqual(checkpointDirs('k1'), [...ids].sort(), 'no checkpoint directory without its record');
      assert.deepEqual(journals(t.dir), []);
      if (info.state === 'stopped') {
        assert.ok(info.checkpoint && ids.includes(info.checkpoint), `stopped, and waiting on a recorded checkpoint: ${JSON.stringify(info)}`);
        t.ok(['restore', 'k1']);
      } else {
        assert.equal(info.state, 'running');
      }
      const outcome = ids.length === 0 ? 'undone' : info.state === 'stopped' ? 'finished, stopped' : 'finished, running';
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      for (const id of ids) t.ok(['checkpoint', 'rm', 'k1', id]);
      assert.deepEqual(mountsUnder(path.join(t.dir, 'containers', 'k1')).filter((m) => !m.endsWith('/rootfs')), []);
    }
    tc.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
  });

  test('afterwards destroy --force leaves no mount, loop device, cgroup, process or directory', () => {
    t.ok(['destroy', '--force', 'k1']);
    assert.deepEqual(mountsUnder(t.dir), []);
    assert.deepEqual(loopsUnder(t.dir), []);
    assert.deepEqual(leftoverCgroups(t.dir), []);
    assert.deepEqual(leftoverMonitors(t.dir), []);
    assert.deepEqual(processesUnder(t.dir), []);
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'containers')), []);
    assert.deepEqual(journals(t.dir), []);
  });
});
