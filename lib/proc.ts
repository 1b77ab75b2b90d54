import fs = require('node:fs');

/**
 * The start time of a process (field 22 of /proc/PID/stat, in clock ticks
 * since boot), or undefined when it is gone. Stored beside every pid so a
 * reused pid is never mistaken for the container (as crun does).
 */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parens: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19].
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return Number(rest[19]);
}

/** Is the process with this pid still the one that started at `startTime`? */
export function isSameProcess(pid: number | undefined, startTime: number | undefined): boolean {
  if (!pid || startTime === undefined) return false;
  return processStartTime(pid) === startTime;
}

export const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGCHLD: 17, SIGCONT: 18,
  SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26,
  SIGPROF: 27, SIGWINCH: 28, SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
};

export function signalName(n: number): string {
  return Object.keys(SIGNALS).find((k) => SIGNALS[k] === n) ?? `SIG${n}`;
}

/** Does process `pid` exist (one of another user's counts: kill(0) says EPERM)? */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The anonymous and shared memory resident in `pids` (RssAnon + RssShmem):
 * about what a dump of them writes. A process gone meanwhile counts nothing.
 */
export function residentMemoryBytes(pids: Iterable<number>): number {
  let kib = 0;
  for (const pid of pids) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      continue;
    }
    for (const m of status.matchAll(/^Rss(?:Anon|Shmem):\s+(\d+) kB$/gm)) kib += Number(m[1]);
  }
  return kib * 1024;
}
