import fs = require('node:fs');

/**
 * Kernel objects CRIU cannot checkpoint, as they show in /proc/PID/fd. CRIU
 * fails on them with low-level errors ("send_fds failed (-22)"), so after a
 * failed dump tsvz names them itself.
 */
const UNDUMPABLE: [RegExp, string][] = [
  [/^anon_inode:\[io_uring\]$/, 'an io_uring'],
  [/^anon_inode:\[perf_event\]$/, 'a perf event'],
  [/^anon_inode:bpf-prog$/, 'a BPF program'],
];

/**
 * "process 1 (app) holds an io_uring (fd 3)" for each such fd in the given
 * host pids; also files of mounts the container does not have, which CRIU
 * cannot find ("Can't lookup mount"): typically the output of a `tsvz exec`
 * that a job left running in the background kept.
 */
export function findUndumpable(pids: number[]): string[] {
  const found: string[] = [];
  for (const pid of pids) {
    let fds: string[];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    let mounts: Set<string> | undefined | null;
    for (const fd of fds) {
      let target: string;
      try { target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
      const match = UNDUMPABLE.find(([re]) => re.test(target));
      if (match) found.push(`process ${nsPid(pid)} (${comm(pid)}) holds ${match[1]} (fd ${fd})`);
      else if (target.startsWith('/') && (mounts ??= mountIds(pid)) && !mounts.has(fdMount(pid, fd) ?? '')) {
        found.push(`process ${nsPid(pid)} (${comm(pid)}) holds a file from outside the container (fd ${fd}: ${target}), such as the output of a \`tsvz exec\` it was started by`);
      }
    }
  }
  return found;
}

/** The ids of the mounts `pid` sees; null when they cannot be read (then no fd is judged by them). */
function mountIds(pid: number): Set<string> | null {
  try {
    return new Set(fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').map((l) => l.split(' ')[0]).filter(Boolean));
  } catch {
    return null;
  }
}

function fdMount(pid: number, fd: string): string | undefined {
  try {
    return /^mnt_id:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** The pid as the container sees it (last NSpid entry). */
function nsPid(pid: number): string {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('NSpid:'));
    return line?.split(/\s+/).pop() ?? String(pid);
  } catch {
    return String(pid);
  }
}

function comm(pid: number): string {
  try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return '?'; }
}
