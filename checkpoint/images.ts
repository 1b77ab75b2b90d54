import fs = require('node:fs');
import path = require('node:path');
import { InvalidArgumentError } from '../lib/errors';
import type { StaticMessage } from './static-message';

/**
 * Reading CRIU's image files (what `crit decode` does, for the few images we
 * show). A file is a magic (IMG_COMMON or IMG_SERVICE, then the image's own;
 * inventory.img has only its own), then entries, each a 4-byte little-endian
 * size and a protobuf message of that size.
 */

/** criu/include/magic.h */
export const MAGIC = {
  common: 0x54564319,
  service: 0x55105940,
  pstree: 0x50273030,
  fdinfo: 0x56213732,
  pagemap: 0x56084025,
  core: 0x55053847,
  ids: 0x54432030,
  mm: 0x57492820,
  files: 0x56303138,
  ttyInfo: 0x59453036,
  stats: 0x57093306,
  cgroup: 0x59383330,
  userns: 0x55474906,
} as const;

/** CRIU's pages are the dumping host's; 4 KiB on x86-64. */
const PAGE_SIZE = 4096;

/** Which generated module (scripts/build) holds a message: proto/criu-images.proto, or the small criu-stats.proto. */
type Proto = 'images' | 'stats';

 
const GENERATED: Record<Proto, () => Record<string, StaticMessage>> = {
  images: () => (require('../proto/criu-images') as { tsvz: { criu: { images: Record<string, StaticMessage> } } }).tsvz.criu.images,
  stats: () => (require('../proto/criu-stats') as { tsvz: { criu: { stats: Record<string, StaticMessage> } } }).tsvz.criu.stats,
};
 

function type(name: string, proto: Proto): StaticMessage {
  const t = GENERATED[proto]()[name];
  if (!t) throw new Error(`no message ${name} in criu-${proto}.proto`);
  return t;
}

function corrupt(file: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`checkpoint image ${path.basename(file)} is unreadable: ${why}`);
}

/** The raw entries of an image file after checking its magic. */
export function parseImage(data: Buffer, magic: number, file = 'image'): Buffer[] {
  if (data.length < 4) throw corrupt(file, 'too short for a magic');
  let off = 4;
  let found = data.readUInt32LE(0);
  if (found === MAGIC.common || found === MAGIC.service) {
    if (data.length < 8) throw corrupt(file, 'too short for a magic');
    found = data.readUInt32LE(4);
    off = 8;
  }
  if (found !== magic) throw corrupt(file, `magic 0x${found.toString(16)}, expected 0x${magic.toString(16)}`);
  const entries: Buffer[] = [];
  while (off < data.length) {
    if (off + 4 > data.length) throw corrupt(file, 'truncated entry size');
    const size = data.readUInt32LE(off);
    off += 4;
    if (off + size > data.length) throw corrupt(file, 'truncated entry');
    entries.push(data.subarray(off, off + size));
    off += size;
  }
  return entries;
}

/** Decode every entry of `file` as `message` (or, with `first`, the first entry as `first` and the rest as `message`). */
function decodeImage<T>(file: string, magic: number, message: string, first?: string, proto: Proto = 'images'): T[] {
  const entries = parseImage(fs.readFileSync(file), magic, file);
  return entries.map((buf, i) => {
    const t = type(i === 0 && first ? first : message, proto);
    try {
      return t.toObject(t.decode(buf), { longs: Number, enums: String }) as T;
    } catch (err) {
      throw corrupt(file, (err as Error).message);
    }
  });
}

function decodeIfExists<T>(file: string, magic: number, message: string, first?: string, proto: Proto = 'images'): T[] {
  return fs.existsSync(file) ? decodeImage<T>(file, magic, message, first, proto) : [];
}

/** One line of a uid_map or gid_map: ids first.. inside are lowerFirst.. outside. */
export interface IdExtent {
  first: number;
  lowerFirst: number;
  count: number;
}

export interface UsernsImage {
  file: string;
  uid: IdExtent[];
  gid: IdExtent[];
}

const USERNS_FILE = /^userns-\d+\.img$/;

/** The dumped tree's own user namespace (userns-<id>.img), or undefined when it had none (a privileged container). */
export function readUsernsImage(dir: string): UsernsImage | undefined {
  const files = fs.readdirSync(dir).filter((f) => USERNS_FILE.test(f));
  if (files.length === 0) return undefined;
  if (files.length > 1) throw corrupt(path.join(dir, files[0]), 'more than one user namespace (nested ones are not restorable)');
  const file = path.join(dir, files[0]);
  type Entry = { uidMap?: Partial<IdExtent>[]; gidMap?: Partial<IdExtent>[] };
  const [e] = decodeImage<Entry>(file, MAGIC.userns, 'userns_entry');
  const extents = (list: Partial<IdExtent>[] | undefined) => (list ?? []).map((x) => ({ first: x.first ?? 0, lowerFirst: x.lowerFirst ?? 0, count: x.count ?? 0 }));
  return { file, uid: extents(e?.uidMap), gid: extents(e?.gidMap) };
}

/** Write `image`'s maps back into its file (same magic), atomically. */
export function writeUsernsImage(image: UsernsImage): void {
  const data = fs.readFileSync(image.file);
  const header = data.readUInt32LE(0) === MAGIC.common || data.readUInt32LE(0) === MAGIC.service ? 8 : 4;
  const t = type('userns_entry', 'images');
  const body = t.encode(t.fromObject({ uidMap: image.uid, gidMap: image.gid })).finish();
  const size = Buffer.alloc(4);
  size.writeUInt32LE(body.length, 0);
  const tmp = `${image.file}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([data.subarray(0, header), size, body]), { mode: 0o644 });
  fs.renameSync(tmp, image.file);
}

export interface DumpStats {
  /** µs CRIU spent freezing the tree. */
  freezingUs: number;
  /** µs the tree stayed frozen (the application's pause). */
  frozenUs: number;
  memdumpUs: number;
  memwriteUs: number;
  pagesScanned: number;
  pagesSkippedParent: number;
  pagesWritten: number;
}

/** CRIU's own statistics of a dump (the stats-dump file), or undefined when it wrote none. */
export function readDumpStats(dir: string): DumpStats | undefined {
  const [entry] = decodeIfExists<{ dump?: Record<string, number> }>(path.join(dir, 'stats-dump'), MAGIC.stats, 'stats_entry', undefined, 'stats');
  const d = entry?.dump;
  if (!d) return undefined;
  return {
    freezingUs: d.freezingTime ?? 0,
    frozenUs: d.frozenTime ?? 0,
    memdumpUs: d.memdumpTime ?? 0,
    memwriteUs: d.memwriteTime ?? 0,
    pagesScanned: d.pagesScanned ?? 0,
    pagesSkippedParent: d.pagesSkippedParent ?? 0,
    pagesWritten: d.pagesWritten ?? 0,
  };
}

/**
 * Controllers (CRIU's names: "memory", "cpu,cpuacct", "" for cgroup2) in
 * which the dumped tasks' cgroup namespace is rooted: the container's own
 * cgroups. A restore into another container points these at its cgroups.
 */
export function namespacedCgroupControllers(dir: string): string[] {
  type Cgroups = { sets?: { ctls?: { name?: string; cgnsPrefix?: number }[] }[] };
  const [cg] = decodeIfExists<Cgroups>(path.join(dir, 'cgroup.img'), MAGIC.cgroup, 'cgroup_entry');
  const names = new Set<string>();
  for (const set of cg?.sets ?? []) for (const m of set.ctls ?? []) if ((m.cgnsPrefix ?? 0) > 0) names.add(m.name ?? '');
  return [...names].sort();
}

export interface CheckpointProcess {
  pid: number;
  ppid: number;
  threads: number;
  comm?: string;
  state?: string;
  vmas: number;
  /** Mapped address space. */
  vmaBytes: number;
  /** Memory written to the images (pages-*.img). */
  dumpedBytes: number;
}

export interface CheckpointFile {
  pid: number;
  fd: number;
  /** CRIU's fd type, lower case: reg, tty, pipe, unixsk, inetsk, ... */
  type: string;
  /** For files and terminals. */
  path?: string;
}

export interface CheckpointSocket {
  pid: number;
  fd: number;
  family: string;
  proto: string;
  state: string;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}

export interface CheckpointInspection {
  processes: CheckpointProcess[];
  memory: { vmas: number; bytes: number; pagesWritten: number; bytesWritten: number };
  files: CheckpointFile[];
  sockets: CheckpointSocket[];
}

interface PstreeEntry { pid: number; ppid?: number; threads?: number[] }
interface CoreEntry { tc?: { taskState?: number; comm?: string } }
interface FdinfoEntry { id: number; type: string; fd: number }
interface TtyInfo { id: number; type?: string; pty?: { index?: number } }
interface InetSk { family?: number; type?: number; proto?: number; state?: number; srcPort?: number; dstPort?: number; srcAddr?: number[]; dstAddr?: number[] }
interface FileEntry { type: string; id: number; reg?: { name?: string }; isk?: InetSk; tty?: { ttyInfoId?: number } }

const TASK_STATES: Record<number, string> = { 1: 'alive', 2: 'dead', 3: 'stopped', 6: 'zombie' };

/** What a checkpoint holds, read from its images: processes, memory, open files, sockets. */
export function inspectCheckpoint(dir: string): CheckpointInspection {
  const img = (name: string) => path.join(dir, name);
  const pstree = decodeImage<PstreeEntry>(img('pstree.img'), MAGIC.pstree, 'pstree_entry');
  const fileEntries = new Map(decodeIfExists<FileEntry>(img('files.img'), MAGIC.files, 'file_entry').map((f) => [f.id, f]));
  const ttys = new Map(decodeIfExists<TtyInfo>(img('tty-info.img'), MAGIC.ttyInfo, 'tty_info_entry').map((t) => [t.id, t]));
  const report: CheckpointInspection = { processes: [], memory: { vmas: 0, bytes: 0, pagesWritten: 0, bytesWritten: 0 }, files: [], sockets: [] };

  for (const p of pstree) {
    const [core] = decodeIfExists<CoreEntry>(img(`core-${p.pid}.img`), MAGIC.core, 'core_entry');
    const [mm] = decodeIfExists<{ vmas?: { start: number; end: number }[] }>(img(`mm-${p.pid}.img`), MAGIC.mm, 'mm_entry');
    const pagemap = decodeIfExists<PagemapEntry>(img(`pagemap-${p.pid}.img`), MAGIC.pagemap, 'pagemap_entry', 'pagemap_head').slice(1);
    const vmas = mm?.vmas ?? [];
    const pages = pagemap.reduce((n, e) => n + pagesWritten(e), 0);
    const proc: CheckpointProcess = {
      pid: p.pid,
      ppid: p.ppid ?? 0,
      threads: p.threads?.length ?? 1,
      comm: core?.tc?.comm,
      state: core?.tc?.taskState === undefined ? undefined : TASK_STATES[core.tc.taskState] ?? String(core.tc.taskState),
      vmas: vmas.length,
      vmaBytes: vmas.reduce((n, v) => n + (v.end - v.start), 0),
      dumpedBytes: pages * PAGE_SIZE,
    };
    report.processes.push(proc);
    report.memory.vmas += proc.vmas;
    report.memory.bytes += proc.vmaBytes;
    report.memory.pagesWritten += pages;

    const [ids] = decodeIfExists<{ filesId?: number }>(img(`ids-${p.pid}.img`), MAGIC.ids, 'task_kobj_ids_entry');
    const filesId = ids?.filesId;
    if (filesId === undefined) continue;
    for (const fdi of decodeIfExists<FdinfoEntry>(img(`fdinfo-${filesId}.img`), MAGIC.fdinfo, 'fdinfo_entry')) {
      const entry = fileEntries.get(fdi.id);
      report.files.push({ pid: p.pid, fd: fdi.fd, type: fdi.type.toLowerCase(), path: filePath(entry, ttys) });
      if (entry?.isk) report.sockets.push(describeSocket(p.pid, fdi.fd, entry.isk));
    }
  }
  report.memory.bytesWritten = report.memory.pagesWritten * PAGE_SIZE;
  return report;
}

interface PagemapEntry { nrPages?: number; compatNrPages?: number; inParent?: boolean; flags?: number }
const PE_LAZY = 2;
const PE_PRESENT = 4;

/** Bytes of memory a lazy dump in `dir` left for the restored copy to pull (post-copy), from its pagemaps. */
export function lazyBytes(dir: string): number {
  let pages = 0;
  for (const p of decodeImage<PstreeEntry>(path.join(dir, 'pstree.img'), MAGIC.pstree, 'pstree_entry')) {
    for (const e of decodeIfExists<PagemapEntry>(path.join(dir, `pagemap-${p.pid}.img`), MAGIC.pagemap, 'pagemap_entry', 'pagemap_head').slice(1)) {
      if (e.flags !== undefined && (e.flags & PE_LAZY) !== 0) pages += e.nrPages ?? e.compatNrPages ?? 0;
    }
  }
  return pages * PAGE_SIZE;
}

/** Pages an entry put into pages-*.img (not those left in a parent dump, nor lazy ones). */
function pagesWritten(e: PagemapEntry): number {
  const present = e.flags !== undefined ? (e.flags & PE_PRESENT) !== 0 : !e.inParent;
  return present ? e.nrPages ?? e.compatNrPages ?? 0 : 0;
}

function filePath(entry: FileEntry | undefined, ttys: Map<number, TtyInfo>): string | undefined {
  if (entry?.reg?.name !== undefined) return entry.reg.name;
  const tty = entry?.tty?.ttyInfoId !== undefined ? ttys.get(entry.tty.ttyInfoId) : undefined;
  if (!tty) return undefined;
  if (tty.type === 'PTY') return `/dev/pts/${tty.pty?.index ?? '?'}`;
  if (tty.type === 'CONSOLE') return '/dev/console';
  return `tty (${(tty.type ?? 'unknown').toLowerCase()})`;
}

const FAMILIES: Record<number, string> = { 2: 'inet', 10: 'inet6' };
const PROTOS: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };
const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];

function describeSocket(pid: number, fd: number, sk: InetSk): CheckpointSocket {
  const v6 = sk.family === 10;
  return {
    pid,
    fd,
    family: FAMILIES[sk.family ?? 0] ?? `family ${sk.family}`,
    proto: PROTOS[sk.proto ?? 0] ?? (sk.type === 1 ? 'tcp' : sk.type === 2 ? 'udp' : `proto ${sk.proto}`),
    state: TCP_STATES[sk.state ?? 0] || String(sk.state),
    src: formatAddress(sk.srcAddr ?? [], v6),
    srcPort: sk.srcPort ?? 0,
    dst: formatAddress(sk.dstAddr ?? [], v6),
    dstPort: sk.dstPort ?? 0,
  };
}

/** CRIU stores addresses as 32-bit words whose in-memory (little-endian) bytes are the address in network order. */
export function formatAddress(words: number[], v6: boolean): string {
  const bytes = Buffer.alloc(v6 ? 16 : 4);
  words.slice(0, bytes.length / 4).forEach((w, i) => bytes.writeUInt32LE(w >>> 0, i * 4));
  if (!v6) return [...bytes].join('.');
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.len) best = { at: i, len: j - i };
  }
  if (best.at < 0) return groups.join(':');
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.len).join(':')}`;
}
