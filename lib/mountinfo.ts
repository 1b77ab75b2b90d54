import fs = require('node:fs');

/** One line of /proc/self/mountinfo, the fields we use. */
export interface MountInfo {
  /** The path inside its filesystem that is mounted ("/" for the whole of it). */
  root: string;
  mountPoint: string;
  /** This mount's own options (rw, nosuid, relatime, ...). */
  options?: string[];
  fsType: string;
  /** The filesystem's own options (cgroup v1: its controllers, name=...). */
  superOptions: string[];
}

/** A mount table, in mount order: this process's, or another's (/proc/PID/mountinfo). */
export function readMountInfo(file = '/proc/self/mountinfo'): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    // id parent dev ROOT MOUNTPOINT opts [optional...] - FSTYPE source SUPEROPTS
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 5 || dash < 0) continue;
    out.push({
      root: unescapeMountPath(fields[3]),
      mountPoint: unescapeMountPath(fields[4]),
      options: fields[5].split(','),
      fsType: fields[dash + 1] ?? '',
      superOptions: (fields[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

/** The kernel writes space, tab, newline and backslash in paths as octal escapes (\040). */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
