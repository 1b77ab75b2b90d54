import fs = require('node:fs');
import path = require('node:path');
import { shortHash } from '../lib/hash';
import { MountInfo, readMountInfo } from '../lib/mountinfo';
import { compareText } from '../lib/compare';

/**
 * CRIU's cgroup yard: one directory per cgroup hierarchy, named as CRIU
 * names it ("cpu,cpuacct"; "systemd" for name=systemd; "unified" for
 * cgroup2). Without one, CRIU mounts every hierarchy afresh for each dump
 * that manages cgroups: here that was 10-14 ms of a 64 MiB dump's frozen
 * time. Given one (criu_opts.cgroup_yard), it mounts nothing.
 *
 * Ours is a directory of symlinks to the host's own mounts of those
 * hierarchies. Its name carries a hash of what it links to, so a yard never
 * changes once made (a CRIU using it is never surprised) and a host whose
 * cgroups were remounted elsewhere simply gets a new one.
 *
 * For dumps only: on restore each task joins its cgroups through the yard
 * after it has moved into the container's root, where a symlink to
 * /sys/fs/cgroup/... no longer leads to the host's hierarchy (CRIU's own
 * yard holds mounts, which do).
 */

/** The yard for this host's cgroups, made on first use under `cacheDir`; undefined if a hierarchy has no mount to link to (CRIU then mounts its own). */
export function cgroupYard(cacheDir: string): string | undefined {
  const links = yardLinks(fs.readFileSync('/proc/self/cgroup', 'utf8'), readMountInfo());
  if (!links) return undefined;
  const yard = path.join(cacheDir, `cgroup-yard-${shortHash(JSON.stringify(links))}`);
  if (fs.existsSync(yard)) return yard;
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const tmp = `${yard}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(tmp, { mode: 0o700 });
    for (const [name, target] of links) fs.symlinkSync(target, path.join(tmp, name));
    fs.renameSync(tmp, yard);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    // Another command made the same yard first: the same links.
    if (!fs.existsSync(yard)) throw err;
  }
  return yard;
}

/**
 * [CRIU's name, mount point] for each hierarchy in `procCgroup` (the
 * /proc/<pid>/cgroup text), the mount being one of the whole hierarchy;
 * undefined if any has none.
 */
export function yardLinks(procCgroup: string, mounts: MountInfo[]): [string, string][] | undefined {
  const links: [string, string][] = [];
  for (const line of procCgroup.split('\n')) {
    const m = /^\d+:([^:]*):/.exec(line);
    if (!m) continue;
    const controllers = m[1] === '' ? [] : m[1].split(',');
    const mount = mounts.find((mi) => mi.root === '/' && (controllers.length === 0
      ? mi.fsType === 'cgroup2'
      : mi.fsType === 'cgroup' && controllers.every((c) => mi.superOptions.includes(c))));
    if (!mount) return undefined;
    // A dump names a hierarchy by its line less a leading "name=", a restore by its controllers each less "name=":
    // the same but for a named hierarchy with controllers too ("cpu,name=x"), which gets both.
    const names = controllers.length === 0 ? ['unified'] : [m[1].replace(/^name=/, ''), controllers.map((c) => c.replace(/^name=/, '')).join(',')];
    for (const name of new Set(names)) links.push([name, mount.mountPoint]);
  }
  return links.length > 0 ? links.sort((a, b) => compareText(a[0], b[0])) : undefined;
}
