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

/** "process 1 (app) holds an io_uring (fd 3)" for each such fd in the given host pids. */
export function findUndumpable(pids: number[]): string[] {
  const found: string[] = [];
  for (const pid of pids) {
    let fds: string[];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    for (const fd of fds) {
      let target: string;
      try { target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
      const match = UNDUMPABLE.find(([re]) => re.test(target));
      if (match) found.push(`process ${nsPid(pid)} (${comm(pid)}) holds ${match[1]} (fd ${fd})`);
    }
  }
  return found;
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
