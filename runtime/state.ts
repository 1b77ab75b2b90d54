import fs = require('node:fs');
import { readJsonIfExists, writeJsonAtomic } from '../lib/atomic-file';
import { InvalidStateError } from '../lib/errors';
import { ContainerPaths } from './paths';
import { isSameProcess, processStartTime, signalName } from '../lib/proc';

export type Status = 'created' | 'starting' | 'running' | 'stopped';

export interface ExitInfo {
  exitCode?: number;
  signal?: string;
  oomKilled?: boolean;
  finishedAt?: string;
}

/** What a container is doing: rewritten atomically on every transition. */
export interface ContainerState {
  status: Status;
  /** Host pid of init, and its start time so a reused pid is never mistaken for it. */
  initPid?: number;
  initStartTime?: number;
  monitorPid?: number;
  monitorStartTime?: number;
  startedAt?: string;
  exit?: ExitInfo;
  /** Set when a checkpoint stopped the container: `restore` continues from it. */
  checkpoint?: string;
  /**
   * Set on a source a migration left stopped (`--keep-source`): its copy
   * runs on `host`, so start and restore refuse it without --force.
   */
  migratedTo?: MigratedTo;
}

export interface MigratedTo { host: string; at: string; migration: string }

/** A source a migration left stopped runs only with `force`: its copy runs on the other host, with the same address. */
export function refuseIfMigratedAway(name: string, state: ContainerState, force: boolean | undefined): void {
  const m = state.migratedTo;
  if (!m || force) return;
  throw new InvalidStateError(`container ${name} was migrated to ${m.host} at ${m.at}: its copy runs there`, `\`tsvz destroy ${name}\` removes this stopped one; --force runs it here anyway (two copies, one address)`);
}

interface ExitFile { pid: number; exitCode?: number; signal?: number; finishedAt?: number }

export function readState(paths: ContainerPaths): ContainerState {
  return readJsonIfExists<ContainerState>(paths.state) ?? { status: 'created' };
}

export function writeState(paths: ContainerPaths, state: ContainerState): Promise<void> {
  return writeJsonAtomic(paths.state, state);
}

/**
 * The state as it really is now. A container recorded as running whose init
 * is gone (it exited on its own, was killed, or the host rebooted) is
 * stopped; the monitor's exit.json says how it ended. Pure: writes nothing.
 */
export function observeState(paths: ContainerPaths, recorded: ContainerState = readState(paths)): ContainerState {
  if (recorded.status !== 'running' && recorded.status !== 'starting') return recorded;
  if (isSameProcess(recorded.initPid, recorded.initStartTime)) return recorded;
  const exitFile = readJsonIfExists<ExitFile>(paths.exitFile);
  const exit: ExitInfo = {};
  if (exitFile && exitFile.pid === recorded.initPid) {
    if (exitFile.exitCode !== undefined) exit.exitCode = exitFile.exitCode;
    if (exitFile.signal !== undefined) exit.signal = signalName(exitFile.signal);
    if (exitFile.finishedAt) exit.finishedAt = new Date(exitFile.finishedAt).toISOString();
  }
  // A restore that died keeps saying which checkpoint the container waits on.
  return { status: 'stopped', startedAt: recorded.startedAt, exit, ...(recorded.checkpoint ? { checkpoint: recorded.checkpoint } : {}), ...(recorded.migratedTo ? { migratedTo: recorded.migratedTo } : {}) };
}

/** Record a container as running: init and its monitor, each with its start time. */
export async function writeRunning(paths: ContainerPaths, initPid: number, monitorPid: number | undefined): Promise<ContainerState> {
  const state: ContainerState = {
    status: 'running',
    initPid,
    initStartTime: processStartTime(initPid),
    monitorPid,
    monitorStartTime: monitorPid ? processStartTime(monitorPid) : undefined,
    startedAt: new Date().toISOString(),
  };
  await writeState(paths, state);
  return state;
}

export function containerExists(paths: ContainerPaths): boolean {
  return fs.existsSync(paths.config);
}
