import fs = require('node:fs');
import { findCommand, run as runTool } from '../lib/process';
import { detectCgroupMode } from '../runtime/cgroups';
import { criuBinary } from '../checkpoint/criu/binary';
import { nativeBinary } from '../runtime/paths';
import { hostRanges, IDMAP_USER } from '../runtime/idmap';
import { listContainers, privilegedWarning } from './info';
import type { Root } from '../lib/root';
import { listLeftovers } from './recovery';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** A probe: status null when the tool is missing, failed to start or hung. */
async function run(cmd: string, args: string[]): Promise<{ status: number | null; out: string }> {
  if (!findCommand(cmd)) return { status: null, out: '' };
  try {
    const r = await runTool(cmd, args, { allowFail: true, timeoutMs: 30_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
  } catch {
    return { status: null, out: '' };
  }
}

async function tool(name: string, args: string[] = ['--version']): Promise<Check> {
  const r = await run(name, args);
  return { name, ok: r.status === 0, detail: r.status === 0 ? r.out.split('\n')[0] : 'not installed' };
}

/** CRIU version as [major, minor] from `criu --version`. */
export function parseCriuVersion(text: string): [number, number] | undefined {
  const m = /Version:\s*(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** What this host supports: the answers `tsvz doctor` prints; with `root`, also its privileged containers. */
export async function runDoctor(root?: Root): Promise<Check[]> {
  const checks: Check[] = [];
  const mode = detectCgroupMode();
  checks.push({ name: 'cgroups', ok: true, detail: mode === 'hybrid' ? 'hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified)' : mode });
  const v1Freezer = fs.existsSync('/sys/fs/cgroup/freezer/freezer.state') || fs.existsSync('/sys/fs/cgroup/freezer/tasks');
  const v2Root = mode === 'v2' ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
  const v2Freeze = fs.existsSync(v2Root) && fs.readdirSync(v2Root).some((e) => fs.existsSync(`${v2Root}/${e}/cgroup.freeze`));
  checks.push({ name: 'freezer', ok: v1Freezer || v2Freeze || mode !== 'v1', detail: [v1Freezer && 'v1 freezer.state', (v2Freeze || mode !== 'v1') && 'v2 cgroup.freeze'].filter(Boolean).join(', ') || 'none' });
  for (const ns of ['pid', 'mnt', 'uts', 'ipc', 'net', 'cgroup']) {
    if (!fs.existsSync(`/proc/self/ns/${ns}`)) checks.push({ name: `namespace ${ns}`, ok: false, detail: 'missing' });
  }
  checks.push({ name: 'namespaces', ok: true, detail: 'pid mnt uts ipc net cgroup' });
  checks.push(...securityChecks(root));
  for (const bin of ['tsvz-monitor', 'tsvz-exec'] as const) {
    checks.push({ name: bin, ok: fs.existsSync(nativeBinary(bin)), detail: fs.existsSync(nativeBinary(bin)) ? nativeBinary(bin) : 'not built: run `npm install`' });
  }
  const criu = criuBinary();
  const version = await run(criu, ['--version']);
  const v = parseCriuVersion(version.out);
  const recent = v !== undefined && (v[0] > 4 || (v[0] === 4 && v[1] >= 1));
  const full = /Version:\s*(\S+)/.exec(version.out)?.[1];
  checks.push({ name: 'criu', ok: recent, detail: v ? `${full} (${criu})${recent ? '' : ': need >= 4.1'}` : 'not installed: run scripts/setup-host' });
  if (v) {
    // Independent probes, each a CRIU start: run together.
    const [check, uffd, dirty] = await Promise.all([
      run(criu, ['check']),
      run(criu, ['check', '--feature', 'uffd-noncoop']),
      run(criu, ['check', '--feature', 'mem_dirty_track']),
    ]);
    checks.push({ name: 'criu check', ok: check.status === 0, detail: check.out.split('\n').pop() ?? '' });
    checks.push({ name: 'userfaultfd (post-copy)', ok: uffd.status === 0, detail: uffd.status === 0 ? 'available' : 'unavailable' });
    checks.push({ name: 'soft-dirty (pre-copy)', ok: dirty.status === 0, detail: dirty.status === 0 ? 'available' : 'unavailable on this kernel' });
  }
  // Storage drivers say themselves what they miss (tools, kernel support).
  const { driverReport } = require('../storage/registry') as typeof import('../storage/registry');
  for (const d of await driverReport()) {
    const caps = [d.capabilities.atomicSnapshot && 'atomic snapshot', d.capabilities.cowClone && 'cow clone', d.capabilities.incrementalSend && 'incremental send'].filter(Boolean).join(', ');
    checks.push({ name: `storage ${d.name}`, ok: d.missing.length === 0, detail: d.missing.length === 0 ? `${caps || 'copies'}; sends ${d.capabilities.sendFormats.join('/')}` : d.missing.join('; ') });
  }
  checks.push(...(await Promise.all([tool('ip', ['-V']), tool('runc', ['--version'])])));
  if (root) {
    // Left by operations that were killed; the next command on each finishes or undoes it.
    const left = listLeftovers(root);
    if (left.length === 0) checks.push({ name: 'interrupted operations', ok: true, detail: 'none' });
    for (const l of left) checks.push({ name: `interrupted: ${l.what}`, ok: false, detail: l.detail });
  }
  return checks;
}

/** User namespaces (the default), seccomp, and the containers that have neither boundary. */
function securityChecks(root?: Root): Check[] {
  const checks: Check[] = [];
  try {
    const r = hostRanges();
    checks.push({ name: 'user namespaces', ok: fs.existsSync('/proc/self/ns/user'), detail: `${IDMAP_USER}'s subordinate ids: uids ${r.uid.start}+${r.uid.count}, gids ${r.gid.start}+${r.gid.count}` });
  } catch (err) {
    checks.push({ name: 'user namespaces', ok: false, detail: (err as Error).message });
  }
  const seccomp = /^Seccomp:/m.test(fs.readFileSync('/proc/self/status', 'utf8'));
  checks.push({ name: 'seccomp', ok: seccomp, detail: seccomp ? 'filters for every container and exec' : 'the kernel has no seccomp' });
  if (root) {
    const privileged = listContainers(root).filter((c) => c.security.privileged);
    checks.push({
      name: 'privileged containers',
      ok: privileged.length === 0,
      detail: privileged.length === 0 ? 'none' : `WARNING: ${privileged.map((c) => `${c.name} (${privilegedWarning(c.config)})`).join('; ')}`,
    });
  }
  return checks;
}
