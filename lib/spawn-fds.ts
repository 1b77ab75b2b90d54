import fs = require('node:fs');
import os = require('node:os');
import { SystemError } from './errors';
import { lazyLibc } from './koffi';
import { waitReadable } from './fd-watch';

/*
 * Starting `criu swrk` with posix_spawn(3) through koffi, not child_process:
 * loading child_process (and the stream and net modules it pulls in) and
 * setting up a first spawn cost a checkpoint ~5 ms, a tenth of tsvz's own
 * share of a 64 MiB dump; posix_spawn takes 0.5 ms.
 */

export interface SpawnedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Spawned {
  pid: number;
  /** Resolves once the process exited and was reaped. */
  exited: Promise<SpawnedExit>;
  /** The end of what it wrote to stderr (the last STDERR_KEPT bytes). */
  stderrTail(): string;
}

const STDERR_KEPT = 4096;
const MFD_CLOEXEC = 1;
const F_DUPFD_CLOEXEC = 1030;
const WNOHANG = 1;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
/** glibc's posix_spawn_file_actions_t (80 bytes), posix_spawnattr_t (336) and sigset_t (128), with room. */
const FILE_ACTIONS_BYTES = 128;
const ATTR_BYTES = 512;
const SIGSET_BYTES = 128;

interface Libc {
  posixSpawnp(pid: number[], file: string, fa: Buffer, attr: Buffer, argv: (string | null)[], envp: (string | null)[]): number;
  faInit(fa: Buffer): number;
  faDestroy(fa: Buffer): number;
  faAddDup2(fa: Buffer, fd: number, newfd: number): number;
  attrInit(attr: Buffer): number;
  attrDestroy(attr: Buffer): number;
  attrSetFlags(attr: Buffer, flags: number): number;
  attrSetSigMask(attr: Buffer, set: Buffer): number;
  attrSetSigDefault(attr: Buffer, set: Buffer): number;
  sigEmptySet(set: Buffer): number;
  sigFillSet(set: Buffer): number;
  memfdCreate(name: string, flags: number): number;
  fcntl(fd: number, cmd: number, type: string, arg: number): number;
  pidfdOpen(pid: number, flags: number): number;
  waitpid(pid: number, status: number[], options: number): number;
  errno(): number;
}

const bind = lazyLibc((lib, koffi): Libc => ({
  posixSpawnp: lib.func('int posix_spawnp(_Out_ int *pid, const char *file, void *fa, void *attr, const char **argv, const char **envp)'),
  faInit: lib.func('int posix_spawn_file_actions_init(void *fa)'),
  faDestroy: lib.func('int posix_spawn_file_actions_destroy(void *fa)'),
  faAddDup2: lib.func('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)'),
  attrInit: lib.func('int posix_spawnattr_init(void *attr)'),
  attrDestroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
  attrSetFlags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
  attrSetSigMask: lib.func('int posix_spawnattr_setsigmask(void *attr, void *set)'),
  attrSetSigDefault: lib.func('int posix_spawnattr_setsigdefault(void *attr, void *set)'),
  sigEmptySet: lib.func('int sigemptyset(void *set)'),
  sigFillSet: lib.func('int sigfillset(void *set)'),
  memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
  fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  pidfdOpen: lib.func('int pidfd_open(int pid, unsigned int flags)'),
  waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
  errno: () => koffi.errno(),
}));

/**
 * Runs `file` (looked up in PATH) with `args`, `env` (this process's
 * environment unless given),
 * /dev/null as stdin and stdout, stderr kept in memory, `fds` as its fds 3,
 * 4, ... (the caller still owns and closes its own), default signal handling
 * and an empty signal mask. A failed exec (ENOENT, EACCES) is thrown here,
 * as an Error with that `code`.
 */
export function spawnWithFds(file: string, args: string[], fds: number[], env: NodeJS.ProcessEnv = process.env): Spawned {
  const c = bind();
  const stderr = c.memfdCreate('tsvz-criu-stderr', MFD_CLOEXEC);
  if (stderr < 0) throw new SystemError(`memfd_create failed: errno ${c.errno()}`);
  const devNull = fs.openSync('/dev/null', 'r+');
  // The sources, copied above every target fd number, so no dup2 overwrites one still to be copied.
  const targets = [devNull, devNull, stderr, ...fds];
  const sources: number[] = [];
  const fa = Buffer.alloc(FILE_ACTIONS_BYTES);
  const attr = Buffer.alloc(ATTR_BYTES);
  c.faInit(fa);
  c.attrInit(attr);
  let spawned = false;
  try {
    for (const fd of targets) {
      const high = c.fcntl(fd, F_DUPFD_CLOEXEC, 'int', targets.length);
      if (high < 0) throw new SystemError(`fcntl(F_DUPFD_CLOEXEC) failed: errno ${c.errno()}`);
      sources.push(high);
    }
    sources.forEach((fd, target) => c.faAddDup2(fa, fd, target));
    const none = Buffer.alloc(SIGSET_BYTES);
    const all = Buffer.alloc(SIGSET_BYTES);
    c.sigEmptySet(none);
    c.sigFillSet(all);
    c.attrSetSigMask(attr, none);
    c.attrSetSigDefault(attr, all);
    c.attrSetFlags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const envp = Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    const pid = [0];
    const err = c.posixSpawnp(pid, file, fa, attr, [file, ...args, null], [...envp, null]);
    if (err !== 0) throw Object.assign(new Error(`cannot run ${file}: ${errnoName(err)}`), { code: errnoName(err), errno: err });
    spawned = true;
    let tail: string | undefined;
    const exited = reap(c, pid[0]).finally(() => {
      tail = readTail(stderr, STDERR_KEPT);
      fs.closeSync(stderr);
    });
    return { pid: pid[0], exited, stderrTail: () => tail ?? readTail(stderr, STDERR_KEPT) };
  } finally {
    c.faDestroy(fa);
    c.attrDestroy(attr);
    for (const fd of sources) fs.closeSync(fd);
    fs.closeSync(devNull);
    if (!spawned) fs.closeSync(stderr);
  }
}

/**
 * Waits for and reaps a child of this process that was not spawned here,
 * e.g. a tree CRIU restored as its sibling (rst_sibling); a pid that is not
 * our child resolves at once with neither code nor signal.
 */
export function reapChild(pid: number): Promise<SpawnedExit> {
  return reap(bind(), pid);
}

/** Waits (its pidfd watched by lib/fd-watch) and reaps. */
async function reap(c: Libc, pid: number): Promise<SpawnedExit> {
  const pidfd = c.pidfdOpen(pid, 0);
  const status = [0];
  try {
    for (;;) {
      const r = c.waitpid(pid, status, WNOHANG);
      if (r === pid) break;
      if (r < 0) return { code: null, signal: null }; // not ours to reap after all (ECHILD)
      // Without pidfds (Linux < 5.3), look again shortly.
      await (pidfd >= 0 ? waitReadable(pidfd) : new Promise((resolve) => setTimeout(resolve, 5)));
    }
  } finally {
    if (pidfd >= 0) fs.closeSync(pidfd);
  }
  const s = status[0];
  const termsig = s & 0x7f;
  if (termsig === 0) return { code: (s >> 8) & 0xff, signal: null };
  return { code: null, signal: signalName(termsig) };
}

function readTail(fd: number, max: number): string {
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, max);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } catch {
    return '';
  }
}

function errnoName(errno: number): string {
  return Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
}

function signalName(sig: number): NodeJS.Signals | null {
  return (Object.entries(os.constants.signals).find(([, n]) => n === sig)?.[0] as NodeJS.Signals | undefined) ?? null;
}
