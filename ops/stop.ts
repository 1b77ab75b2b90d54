import { thawAll } from '../runtime/cgroups/freezer';
import { Container } from '../runtime/container';
import { InvalidArgumentError, InvalidStateError } from '../lib/errors';
import { findMonitorPids } from '../runtime/monitor-pids';
import { pollUntil } from '../lib/poll';
import { isSameProcess, SIGNALS } from '../lib/proc';
import { ContainerState } from '../runtime/state';
import { reconcile } from '../runtime/release';
import { lockContainer } from './recovery';

/**
 * Clean shutdown: the container's stop signal to init, then SIGKILL to the
 * whole cgroup once `timeoutSec` has passed. Waits for the monitor to record
 * the exit, releases cgroups and veth, records "stopped".
 */
export async function stopContainer(c: Container, timeoutSec = 10): Promise<ContainerState> {
  if (!Number.isFinite(timeoutSec) || timeoutSec < 0) throw new InvalidArgumentError(`invalid --timeout "${timeoutSec}"`);
  return lockContainer(c, async () => {
    const current = await reconcile(c);
    if (current.status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
    const pid = current.initPid!;
    await thawAll(c.cgroups()); // a frozen init would not see the stop signal
    signalInit(c, current, SIGNALS[c.config.stopSignal] ?? SIGNALS.SIGTERM);
    if (!(await waitGone(pid, current.initStartTime, timeoutSec * 1000))) {
      await c.cgroups().killAll();
      if (!(await waitGone(pid, current.initStartTime, 5000))) {
        throw new InvalidStateError(`container ${c.name}'s init (pid ${pid}) survived SIGKILL for 5 s`, 'it may be stuck in the kernel (state D); try again later');
      }
    }
    // The monitor writes exit.json right after reaping init. Watch the one
    // the state names, then make sure no other is left (one /proc scan, normally).
    await waitFor(() => !isSameProcess(current.monitorPid, current.monitorStartTime), 2000);
    await waitFor(() => findMonitorPids(c.paths.dir).length === 0, 2000);
    return await reconcile(c);
  });
}

export function signalInit(c: Container, state: ContainerState, signal: number): void {
  if (!isSameProcess(state.initPid, state.initStartTime)) throw new InvalidStateError(`container ${c.name} is not running`);
  try {
    process.kill(state.initPid!, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function waitGone(pid: number, startTime: number | undefined, ms: number): Promise<boolean> {
  return waitFor(() => !isSameProcess(pid, startTime), ms);
}

/** Polls `cond`: every millisecond at first (a killed process is gone within a few), backing off to 50 ms. */
function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  return pollUntil(cond, { timeoutMs: ms, factor: 1.25, maxMs: 50 });
}
