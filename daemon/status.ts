import fs = require('node:fs');
import type { Root } from '../lib/root';
import { DaemonFiles } from './files';
import { readHostIdentity } from './identity';

/**
 * Whether a daemon serves a root, for `tsvz doctor`: daemon.json (written
 * by the daemon once it listens, removed when it stops) and its pid still
 * being a tsvz daemon. Reads files only: no gRPC, no X.509 library.
 */
export interface DaemonStatus {
  running: boolean;
  pid?: number;
  address?: string;
  metrics?: string;
  startedAt?: string;
  /** This host's certificate fingerprint, when it has an identity. */
  fingerprint?: string;
}

export function daemonStatus(root: Root): DaemonStatus {
  const files = new DaemonFiles(root);
  let fingerprint: string | undefined;
  try { fingerprint = readHostIdentity(root)?.fingerprint; } catch { /* unreadable: reported as none */ }
  let rec: { pid?: number; address?: string; metrics?: string; startedAt?: string } | undefined;
  try { rec = JSON.parse(fs.readFileSync(files.status, 'utf8')) as typeof rec; } catch { rec = undefined; }
  const pid = typeof rec?.pid === 'number' ? rec.pid : undefined;
  const running = pid !== undefined && isDaemon(pid);
  return running ? { running, pid, address: rec?.address, metrics: rec?.metrics, startedAt: rec?.startedAt, fingerprint } : { running: false, fingerprint };
}

function isDaemon(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('daemon');
  } catch {
    return false;
  }
}
