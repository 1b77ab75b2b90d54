import fs = require('node:fs');
import path = require('node:path');
import { getSystemErrorName } from 'node:util';
import { CorruptDataError, InvalidArgumentError, SystemError } from '../lib/errors';
import { lazyLibc } from '../lib/koffi';
import { readMountInfo } from '../lib/mountinfo';

/*
 * The container's /dev across a checkpoint, saved and made again by tsvz
 * instead of by CRIU. CRIU saves a tmpfs by running `tar --gzip` (two
 * execs, ~19 ms here) while the tree is frozen, and extracts it with two
 * more on restore. Our /dev holds a handful of nodes and links, so:
 *  - dump: CRIU is told the mount is external (mnt[/dev]:tsvz-dev) and
 *    writes none of its content; at CRIU's post-dump notification, the
 *    tree still frozen, tsvz lists it into the images (tsvz-dev.json);
 *  - restore: tsvz mounts a tmpfs with the same options on the host, fills
 *    it from the list, and CRIU binds it in as the container's /dev (the
 *    host's mount is detached as soon as CRIU is done).
 * A checkpoint without tsvz-dev.json (an older one) restores as before.
 */

export const DEV_IMAGE = 'tsvz-dev.json';
const KEY = 'tsvz-dev';

type EntryType = 'dir' | 'file' | 'symlink' | 'link' | 'chr' | 'blk' | 'fifo';

/** One file of /dev; `path` is relative to /dev. */
export interface DevEntry {
  path: string;
  type: EntryType;
  /** Permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** chr, blk: the device number, as stat's st_rdev (also mknod's dev_t). */
  rdev?: number;
  /** symlink: its target; link: the path (in /dev) of the file it is a hard link of. */
  target?: string;
  /** file: its content, base64. */
  data?: string;
}

export interface DevImage {
  version: 1;
  /** The tmpfs's own options (size=..., mode=...), as mountinfo shows them. */
  options: string;
  /**
   * The mount's options (nosuid, relatime, ...), as mountinfo shows them.
   * A restore in a user namespace may not change them on its copy (the
   * kernel locks them), so the staged mount has them from the start.
   * Absent in older checkpoints: mounted with none.
   */
  mountOptions?: string[];
  root: { mode: number; uid: number; gid: number };
  entries: DevEntry[];
}

/** A container's /dev as tsvz saves it: a whole tmpfs of its own, and the mounts on it. */
export interface DevMount {
  /** The tree's root process, through whose /proc/PID/root it is read. */
  pid: number;
  options: string;
  mountOptions: string[];
  /** Mount points inside /dev (pts, console), relative to it: CRIU dumps those mounts. */
  covered: Set<string>;
}

/**
 * The /dev of the tree rooted at `pid` when tsvz can save it (one tmpfs,
 * mounted whole), else undefined: CRIU then saves it as any other mount.
 */
export function devMountOf(pid: number): DevMount | undefined {
  const mounts = readMountInfo(`/proc/${pid}/mountinfo`);
  const atDev = mounts.filter((m) => m.mountPoint === '/dev');
  // Mounts stacked on /dev would all answer to mnt[/dev]: leave those to CRIU.
  const dev = atDev.length === 1 ? atDev[0] : undefined;
  if (!dev || dev.fsType !== 'tmpfs' || dev.root !== '/') return undefined;
  const covered = new Set(mounts.filter((m) => m.mountPoint.startsWith('/dev/')).map((m) => m.mountPoint.slice('/dev/'.length)));
  const options = dev.superOptions.filter((o) => o !== 'rw' && o !== 'ro').join(',');
  return { pid, options, mountOptions: dev.options ?? [], covered };
}

/** The dump's `external` entry for a saved /dev. */
export const DEV_EXTERNAL_DUMP = `mnt[/dev]:${KEY}`;

/**
 * List the (frozen) tree's /dev into `imagesDir`. A mount
 * point inside /dev is listed as the empty directory or file it covers.
 * Sockets are left out, as tar leaves them: CRIU binds them anew.
 */
export function saveDev(mount: DevMount, imagesDir: string): void {
  const devPath = `/proc/${mount.pid}/root/dev`;
  const rootStat = fs.statSync(devPath);
  const entries: DevEntry[] = [];
  const seen = new Map<number, string>();
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(devPath, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(devPath, p));
      const base = { path: p, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
      if (mount.covered.has(p)) {
        entries.push(st.isDirectory() ? { ...base, type: 'dir', mode: 0o755, uid: 0, gid: 0 } : { ...base, type: 'file', mode: 0o600, uid: 0, gid: 0, data: '' });
      } else if (st.isDirectory()) {
        entries.push({ ...base, type: 'dir' });
        walk(p);
      } else if (st.isSymbolicLink()) {
        entries.push({ ...base, type: 'symlink', target: fs.readlinkSync(path.join(devPath, p)) });
      } else if (st.isFile()) {
        const first = st.nlink > 1 ? seen.get(st.ino) : undefined;
        if (first !== undefined) entries.push({ ...base, type: 'link', target: first });
        else entries.push({ ...base, type: 'file', data: fs.readFileSync(path.join(devPath, p)).toString('base64') });
        if (st.nlink > 1 && first === undefined) seen.set(st.ino, p);
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        entries.push({ ...base, type: st.isCharacterDevice() ? 'chr' : 'blk', rdev: st.rdev });
      } else if (st.isFIFO()) {
        entries.push({ ...base, type: 'fifo' });
      }
    }
  };
  walk('');
  const image: DevImage = {
    version: 1,
    options: mount.options,
    mountOptions: mount.mountOptions,
    root: { mode: rootStat.mode & 0o7777, uid: rootStat.uid, gid: rootStat.gid },
    entries,
  };
  fs.writeFileSync(path.join(imagesDir, DEV_IMAGE), JSON.stringify(image));
}

/** A /dev made on the host for a restore; remove() detaches and deletes it. */
export interface StagedDev {
  /** The restore's `external` entry. */
  external: string;
  /**
   * Best effort: the restore's outcome does not hang on it. What it leaves,
   * the next restore (or destroy) of the container removes.
   */
  remove(): void;
}

/**
 * Mount a tmpfs at `stage` and fill it from the checkpoint's tsvz-dev.json;
 * undefined when the checkpoint has none (CRIU then makes /dev from its own image).
 */
export function stageDev(imagesDir: string, stage: string): StagedDev | undefined {
  const file = path.join(imagesDir, DEV_IMAGE);
  if (!fs.existsSync(file)) return undefined;
  const image = parseDevImage(fs.readFileSync(file, 'utf8'));
  removeStage(stage); // left by a restore that died before its cleanup
  fs.mkdirSync(stage, { mode: 0o700 });
  const l = libc();
  try {
    if (l.mount('tmpfs', stage, 'tmpfs', mountFlags(image.mountOptions), image.options) !== 0) throw failed('mount tmpfs on', stage, l.errno());
    fs.chownSync(stage, image.root.uid, image.root.gid);
    fs.chmodSync(stage, image.root.mode);
    fillDev(stage, image.entries);
  } catch (err) {
    removeStage(stage);
    throw err;
  }
  return {
    external: `mnt[${KEY}]:${stage}`,
    remove: () => {
      try { removeStage(stage); } catch { /* see StagedDev.remove */ }
    },
  };
}

const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_NOATIME = 0x400;
const MS_NODIRATIME = 0x800;
const MS_RELATIME = 0x200000;
const MS_STRICTATIME = 0x1000000;

/** mount(2) flags for mountinfo's per-mount options; none for an older image that did not record them. */
export function mountFlags(options: string[] | undefined): number {
  if (!options) return 0;
  const has = (o: string) => options.includes(o);
  let flags = (has('nosuid') ? MS_NOSUID : 0) | (has('nodev') ? MS_NODEV : 0) | (has('noexec') ? MS_NOEXEC : 0) | (has('nodiratime') ? MS_NODIRATIME : 0);
  // mountinfo names relatime and noatime; a mount showing neither is strictatime.
  flags |= has('noatime') ? MS_NOATIME : has('relatime') ? MS_RELATIME : MS_STRICTATIME;
  return flags;
}

function removeStage(stage: string): void {
  if (!fs.existsSync(stage)) return;
  const l = libc();
  // EINVAL: nothing mounted there.
  if (l.umount2(stage, MNT_DETACH) !== 0 && l.errno() !== EINVAL) throw failed('unmount', stage, l.errno());
  fs.rmdirSync(stage);
}

/**
 * Make the entries under `dir`, parents before children. Each entry's
 * parent must be a directory made by an earlier entry, so a path can
 * neither climb out (..) nor pass through a symlink it made.
 */
export function fillDev(dir: string, entries: DevEntry[]): void {
  const dirs = new Set(['']);
  const files = new Set<string>();
  for (const e of entries) {
    const parent = path.posix.dirname(e.path) === '.' ? '' : path.posix.dirname(e.path);
    const name = path.posix.basename(e.path);
    if (!dirs.has(parent) || name === '' || name === '.' || name === '..' || e.path.includes('\0')) {
      throw new InvalidArgumentError(`${DEV_IMAGE}: entry "${e.path}" is not inside /dev`);
    }
    const p = path.join(dir, e.path);
    switch (e.type) {
      case 'dir': fs.mkdirSync(p); dirs.add(e.path); break;
      case 'file': fs.writeFileSync(p, Buffer.from(e.data ?? '', 'base64'), { flag: 'wx' }); files.add(e.path); break;
      case 'symlink': fs.symlinkSync(requireString(e, 'target'), p); break;
      case 'link':
        if (!files.has(requireString(e, 'target'))) throw new InvalidArgumentError(`${DEV_IMAGE}: hard link "${e.path}" names no earlier file`);
        fs.linkSync(path.join(dir, e.target!), p);
        continue; // it shares its file's owner and mode
      case 'chr': case 'blk': case 'fifo': makeNode(p, e); break;
      default: throw new InvalidArgumentError(`${DEV_IMAGE}: entry "${e.path}" has an unknown type`);
    }
    fs.lchownSync(p, e.uid, e.gid);
    // After the owner: chown clears the set-id bits.
    if (e.type !== 'symlink') fs.chmodSync(p, e.mode);
  }
  // Deepest first, so making a child does not move its directory's time.
  for (const e of [...entries].reverse()) fs.lutimesSync(path.join(dir, e.path), e.mtimeMs / 1000, e.mtimeMs / 1000);
}

function requireString(e: DevEntry, key: 'target'): string {
  const v = e[key];
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(`${DEV_IMAGE}: entry "${e.path}" has no ${key}`);
  return v;
}

function makeNode(p: string, e: DevEntry): void {
  const type = e.type === 'chr' ? S_IFCHR : e.type === 'blk' ? S_IFBLK : S_IFIFO;
  const l = libc();
  if (l.mknod(p, type | (e.mode & 0o7777), e.type === 'fifo' ? 0 : Number(e.rdev ?? 0)) !== 0) throw failed('mknod', p, l.errno());
}

function parseDevImage(text: string): DevImage {
  let image: DevImage;
  try { image = JSON.parse(text) as DevImage; } catch { throw new InvalidArgumentError(`${DEV_IMAGE} is not a /dev list this tsvz can read`); }
  if (image?.version !== 1 || typeof image.options !== 'string' || !Array.isArray(image.entries) || typeof image.root?.mode !== 'number') {
    throw new InvalidArgumentError(`${DEV_IMAGE} is not a /dev list this tsvz can read`);
  }
  return image;
}

/** Options a container's /dev tmpfs may be mounted with (what tsvz-monitor makes it with, and tmpfs's harmless ones). */
const DEV_MOUNT_OPTIONS = /^(rw|ro|nosuid|nodev|noexec|relatime|noatime|(size|nr_inodes|mode|uid|gid|inode64|inode32|huge)(=[0-9a-z%]+)?)$/;
/** Device nodes a container may bring: null, zero, full, random, urandom, tty, console, ptmx, pts/N (the devices cgroup's list). */
const DEV_NODES: [number, number | '*'][] = [[1, 3], [1, 5], [1, 7], [1, 8], [1, 9], [5, 0], [5, 1], [5, 2], [136, '*']];
const MAX_DEV_ENTRIES = 10_000;
const MAX_DEV_DATA = 16 * 1024 ** 2;

/**
 * The /dev list of a checkpoint from somewhere else (an imported archive),
 * checked before anything is made from it: its shape, bounded sizes, mount
 * options a tmpfs takes harmlessly, no block device and no character device
 * outside a container's standard set, ids and modes in range, every path
 * inside /dev. A checkpoint without a list passes (CRIU makes its /dev).
 */
export function checkForeignDev(imagesDir: string): void {
  const file = path.join(imagesDir, DEV_IMAGE);
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { return; }
  const image = parseDevImage(text);
  const bad = (why: string) => new CorruptDataError(`${DEV_IMAGE} ${why}`);
  for (const opt of image.options.split(',')) if (!DEV_MOUNT_OPTIONS.test(opt)) throw bad(`asks for the tmpfs option "${opt.slice(0, 40)}"`);
  if (image.entries.length > MAX_DEV_ENTRIES) throw bad(`lists more than ${MAX_DEV_ENTRIES} entries`);
  const id = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) < 2 ** 32;
  if (!id(image.root.uid) || !id(image.root.gid) || !(image.root.mode >= 0 && image.root.mode <= 0o7777)) throw bad('has an invalid root');
  let data = 0;
  for (const e of image.entries) {
    if (typeof e?.path !== 'string' || e.path.length > 4096 || e.path.startsWith('/') || e.path.split('/').some((p) => p === '..' || p === '.' || p === '')) throw bad('has an entry outside /dev');
    if (!id(e.uid) || !id(e.gid) || !Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777 || !Number.isFinite(e.mtimeMs)) throw bad(`has an invalid entry "${e.path}"`);
    if (e.type === 'blk') throw bad(`holds a block device ("${e.path}")`);
    if (e.type === 'chr') {
      const dev = Number(e.rdev ?? 0);
      const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
      const minor = (dev & 0xff) | ((dev >> 12) & ~0xff);
      if (!DEV_NODES.some(([ma, mi]) => ma === major && (mi === '*' || mi === minor))) throw bad(`holds device ${major}:${minor} ("${e.path}"), which no container may bring`);
    }
    if (e.type === 'file') data += typeof e.data === 'string' ? e.data.length : 0;
    if (data > MAX_DEV_DATA) throw bad(`holds more than ${MAX_DEV_DATA} bytes of files`);
  }
}

const MNT_DETACH = 2;
const EINVAL = 22;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

interface Libc {
  mount(source: string, target: string, fstype: string, flags: number, data: string): number;
  umount2(target: string, flags: number): number;
  mknod(path: string, mode: number, dev: number): number;
  errno(): number;
}

const libc = lazyLibc((lib, koffi): Libc => ({
  mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
  umount2: lib.func('int umount2(const char *target, int flags)'),
  mknod: lib.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
  errno: () => koffi.errno() as number,
}));

function failed(call: string, p: string, errno: number): SystemError {
  const name = getSystemErrorName(-errno);
  return new SystemError(`cannot make the container's /dev: ${call} ${p} failed (${name})`, Object.assign(new Error(`${call}: ${name}`), { errno }));
}
