import fs = require('node:fs');
import { droppedCapabilities } from '../runtime/capabilities';
import { isPrivileged } from '../runtime/config';
import { seccompSpec } from '../runtime/seccomp';
import { Container } from '../runtime/container';
import { InvalidStateError } from '../lib/errors';
import { faultPoint } from '../lib/fault';
import { MonitorLaunch } from '../runtime/monitor';
import { openPoolOf } from './pool-open';
import { ContainerState, refuseIfMigratedAway, writeRunning, writeState } from '../runtime/state';
import { withUndo } from '../lib/undo';
import { reconcile, releaseHostResources } from '../runtime/release';
import { lockContainer } from './recovery';

/**
 * Start a container: cgroups with its limits, a monitor that clones init
 * into new namespaces, the network wired between "pid" and "go", then the
 * state recorded as running. Returns as soon as init has exec'd. Any failure
 * unwinds every step: no cgroup, veth, monitor or process is left behind.
 */
export async function startContainer(c: Container, opts: { force?: boolean } = {}): Promise<ContainerState> {
  return lockContainer(c, async () => {
    const current = await reconcile(c);
    if (current.status === 'running' || current.status === 'starting') {
      throw new InvalidStateError(`container ${c.name} is already running`);
    }
    refuseIfMigratedAway(c.name, current, opts.force);
    const cfg = c.config;
    await openPoolOf(c);
    return withUndo(async (undo) => {
      for (const stale of [c.paths.exitFile, c.paths.consoleSocket]) fs.rmSync(stale, { force: true });
      // Recorded first: a CLI killed from here on leaves a container that
      // reconcile/destroy --force knows to clean up.
      await writeState(c.paths, { status: 'starting' });
      undo.add('record stopped', () => writeState(c.paths, { ...current, status: current.status === 'created' ? 'created' : 'stopped' }));
      undo.add('release host resources', async () => { await releaseHostResources(c); });

      const cgroups = c.cgroups();
      await cgroups.create(cfg.limits);
      if (cfg.net.mode === 'bridge') await (await import('../runtime/network')).ensureBridge(cfg.net);

      const launch = new MonitorLaunch({
        dir: c.paths.dir,
        rootfs: c.paths.rootfs,
        hostname: cfg.hostname,
        cgroupProcsFiles: cgroups.procsFiles(),
        env: cfg.env,
        capDrop: droppedCapabilities(isPrivileged(cfg)),
        shareNet: false,
        init: cfg.init,
        idmap: cfg.idmap,
        seccomp: seccompSpec(cfg.allowSyscalls),
      });
      undo.add('stop monitor', () => launch.abort());
      const pid = await launch.initPid();
      if (cfg.net.mode === 'bridge') await (await import('../runtime/network')).connectContainer(pid, c.key, cfg.net);
      await faultPoint('start:before-go');
      await launch.go();

      return writeRunning(c.paths, pid, launch.child.pid);
    });
  });
}
