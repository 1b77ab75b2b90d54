import type { Container } from './container';
import { findMonitorPids } from './monitor-pids';
import { removeRestoreStage } from './restore-stage';
import { ContainerState, ExitInfo, writeState } from './state';

/**
 * Free everything a (possibly half-)started container holds on the host:
 * its processes, its monitor, its cgroups, its host veth. Derived from the
 * container's name alone, so it works after a crash that recorded nothing.
 */
export async function releaseHostResources(c: Container): Promise<{ oomKilled: boolean }> {
  const cg = c.cgroups();
  let oomKilled = false;
  if (cg.exists()) {
    oomKilled = (cg.usage().oomKills ?? 0) > 0;
    await cg.killAll();
  }
  for (const pid of findMonitorPids(c.paths.dir)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  if (cg.exists()) await cg.remove();
  // Left by a restore killed half-way.
  await removeRestoreStage(c.key);
  if (c.config.net.mode === 'bridge') await (require('./network') as typeof import('./network')).disconnectContainer(c.key);
  return { oomKilled };
}

/**
 * Under the lock: if the record says running but init is gone, release the
 * host resources and record "stopped" with how it ended (and, after a
 * checkpoint, which one). Returns the truth.
 */
export async function reconcile(c: Container, stoppedBy?: { checkpoint: string }): Promise<ContainerState> {
  const recorded = c.recordedState();
  const observed = c.state();
  if (recorded.status === observed.status && !stoppedBy) return observed;
  const { oomKilled } = await releaseHostResources(c);
  const exit: ExitInfo = { ...observed.exit };
  if (oomKilled) exit.oomKilled = true;
  const next: ContainerState = { status: 'stopped', startedAt: observed.startedAt, exit, ...(observed.checkpoint ? { checkpoint: observed.checkpoint } : {}), ...stoppedBy };
  await writeState(c.paths, next);
  return next;
}
