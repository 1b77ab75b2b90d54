import type * as tar from 'tar-stream';

/**
 * The pax records tsvz writes and reads beyond what tar-stream applies
 * itself (path, linkpath, size): `mtime` with nanoseconds and `uid`/`gid`
 * too big for the ustar header (standard pax), and `TSVZ.xattr.<name>` =
 * base64 value (GNU's SCHILY.xattr is raw bytes, which tar-stream's string
 * records cannot hold).
 */

export const XATTR_PREFIX = 'TSVZ.xattr.';
/** The ustar uid/gid fields hold 6 octal digits. */
export const MAX_HEADER_ID = 0o777777;
/** (uid_t)-1 means "unchanged" to chown, so it is not a valid owner. */
export const MAX_ID = 2 ** 32 - 2;

export type Pax = Record<string, string>;

export function paxOf(header: tar.Header): Pax {
  const pax = header.pax as Pax | null | undefined;
  return pax && typeof pax === 'object' ? pax : {};
}

/** The records for a file's nanosecond mtime, big owners and xattrs; undefined when the ustar header says it all. */
export function paxRecords(st: { mtimeNs: bigint; uid: bigint; gid: bigint }, xattrs: Iterable<[string, Buffer]>): Pax | undefined {
  const pax: Pax = {};
  if (st.mtimeNs % 1_000_000_000n !== 0n) pax.mtime = formatNs(st.mtimeNs);
  if (st.uid > MAX_HEADER_ID) pax.uid = String(st.uid);
  if (st.gid > MAX_HEADER_ID) pax.gid = String(st.gid);
  for (const [name, value] of xattrs) pax[XATTR_PREFIX + name] = value.toString('base64');
  return Object.keys(pax).length > 0 ? pax : undefined;
}

/** The entry's owner: pax records over the header; undefined parts are invalid. */
export function ownerOf(header: tar.Header): { uid: number | undefined; gid: number | undefined } {
  const pax = paxOf(header);
  const id = (text: string | undefined, fallback: number | undefined) => {
    const n = text === undefined ? fallback : /^\d{1,10}$/.test(text) ? Number(text) : undefined;
    return n !== undefined && Number.isInteger(n) && n >= 0 && n <= MAX_ID ? n : undefined;
  };
  return { uid: id(pax.uid, header.uid), gid: id(pax.gid, header.gid) };
}

/** The entry's mtime in nanoseconds; undefined when it has none usable; throws on a malformed pax time. */
export function mtimeNsOf(header: tar.Header): bigint | undefined {
  const text = paxOf(header).mtime;
  if (text !== undefined) return parseNs(text);
  const ms = header.mtime?.getTime();
  return ms !== undefined && Number.isFinite(ms) ? BigInt(Math.trunc(ms)) * 1_000_000n : undefined;
}

/** The entry's TSVZ.xattr records as name -> value. */
export function xattrsOf(header: tar.Header): [string, Buffer][] {
  return Object.entries(paxOf(header))
    .filter(([k]) => k.startsWith(XATTR_PREFIX))
    .map(([k, v]) => [k.slice(XATTR_PREFIX.length), Buffer.from(v, 'base64')]);
}

/** A pax time ("1700000000.123456789", fewer digits, or none) as nanoseconds. */
export function parseNs(text: string): bigint {
  const m = /^(-?)(\d{1,20})(?:\.(\d{1,9})\d*)?$/.exec(text);
  if (!m) throw new Error(`bad pax time ${JSON.stringify(text)}`);
  const ns = BigInt(m[2]) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -ns : ns;
}

export function formatNs(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  return `${neg ? '-' : ''}${abs / 1_000_000_000n}.${String(abs % 1_000_000_000n).padStart(9, '0')}`;
}
