import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import type { Root } from '../lib/root';
import type { HostIdentity } from './identity';
import type { HostDescription } from './proto';

/**
 * What a peer needs to know before it sends this host a container: tsvz,
 * CRIU and kernel versions, CRIU's migration features, CPU flags (a restore
 * needs the CPU features the dump used), the cgroup mode, and each pool
 * with the formats its volumes travel in.
 */
export async function describeHost(root: Root, identity: HostIdentity): Promise<HostDescription> {
  const { detectCgroupMode } = await import('../runtime/cgroups');
  const { listStoragePools } = await import('../ops/pool');
  const { getDriver } = await import('../storage');
  const [criu, pools] = await Promise.all([criuReport(), listStoragePools(root)]);
  return {
    name: identity.name,
    tsvzVersion: tsvzVersion(),
    criuVersion: criu.version,
    kernel: os.release(),
    arch: os.arch(),
    criuFeatures: criu.features,
    cpuFlags: cpuFlags(),
    cgroupMode: detectCgroupMode(),
    pools: pools.map((p) => {
      const caps = driverCaps(getDriver, p.driver);
      return { name: p.name, driver: p.driver, transferFormats: caps?.sendFormats ?? [], incrementalSend: caps?.incrementalSend === true, error: p.error };
    }),
    fingerprint: identity.fingerprint,
  };
}

function driverCaps(getDriver: (name: string) => { capabilities: { sendFormats: string[]; incrementalSend: boolean } }, name: string) {
  try {
    return getDriver(name).capabilities;
  } catch {
    return undefined;
  }
}

async function criuReport(): Promise<{ version: string; features: { lazyPages: boolean; memDirtyTrack: boolean } }> {
  const { CriuClient } = await import('../checkpoint/criu/client');
  const criu = new CriuClient();
  try {
    const v = await criu.version();
    const f = await criu.featureCheck({ lazyPages: true, memTrack: true });
    return { version: `${v.major}.${v.minor}${v.sublevel ? `.${v.sublevel}` : ''}`, features: { lazyPages: f.lazyPages === true, memDirtyTrack: f.memTrack === true } };
  } catch {
    return { version: '', features: { lazyPages: false, memDirtyTrack: false } };
  }
}

/** The first CPU's flags from /proc/cpuinfo (every CPU of a host has the same). */
function cpuFlags(): string[] {
  try {
    const m = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1].trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

let version: string | undefined;

export function tsvzVersion(): string {
  if (version === undefined) {
    try {
      // dist/daemon/ or daemon/: the package's manifest is two or one levels up.
      const candidates = [path.join(__dirname, '..', '..', 'package.json'), path.join(__dirname, '..', 'package.json')];
      const file = candidates.find((f) => fs.existsSync(f));
      version = file ? String((JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version ?? '') : '';
    } catch {
      version = '';
    }
  }
  return version;
}
