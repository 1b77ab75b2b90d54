import crypto = require('node:crypto');
import fs = require('node:fs');
import { Readable } from 'node:stream';
import { CorruptDataError, InvalidArgumentError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import type { ContainerConfig } from '../runtime/config';
import { filesOwnerOf } from '../runtime/rootfs-owner';
import { Backups, BackupTrailer } from '../daemon/proto';
import { DEFAULT_POOL, validateSnapshotName } from '../storage';
import { BackupStore } from './store';
import { connectRemote } from './ship';

/**
 * A backup becomes a container again: from this host's backup store, or
 * fetched from a remote's (`--from`), as a new container (`--as`, default
 * the backup's own name) created from the backup's files and its config.
 * The stream is a full tar; a fetched one is checked against its sha256
 * before the create finishes, and a mismatch or a broken stream undoes the
 * create. Under a new name a bridged container comes back without its
 * address (the original may still hold it).
 */
export interface RestoreResult { name: string; snapshot: string; bytes: number; from: string }

export async function restoreBackup(root: Root, container: string, snapshot: string, opts: { from?: string; as?: string; pool?: string } = {}): Promise<RestoreResult> {
  validateName(container);
  validateSnapshotName(snapshot);
  const name = validateName(opts.as ?? container);
  const pool = opts.pool ? validateName(opts.pool, 'pool') : DEFAULT_POOL;
  let configJson: string;
  let body: Readable;
  let close = () => undefined as void;
  if (opts.from) {
    const client = await connectRemote(root, opts.from);
    close = () => client.close();
    const it = client.serverStream(Backups.Fetch, { container, snapshot })[Symbol.asyncIterator]();
    const first = await it.next().catch((err: unknown) => { close(); throw err; });
    const h = first.done ? undefined : first.value.header;
    if (!h || h.format !== 'tar') { close(); throw new CorruptDataError(`${opts.from} sent no backup header`); }
    configJson = h.configJson ?? '';
    body = Readable.from(verified(it));
  } else {
    const store = new BackupStore(root);
    const b = store.find(container, snapshot);
    configJson = b.configJson;
    body = await store.send(b, 'tar');
  }
  try {
    const config = parseConfig(configJson);
    const { createContainer, specLike } = await import('../ops/create');
    const { unpackTree } = await import('../archive/tree-tar');
    let bytes = 0;
    await createContainer(root, name, specLike(config, { pool, renamed: name !== config.name }), async (rootfs) => {
      bytes = (await unpackTree(body, fs.realpathSync(rootfs))).bytes;
      return filesOwnerOf(config.idmap, "the backup's config");
    });
    return { name, snapshot, bytes, from: opts.from ?? 'local' };
  } finally {
    body.destroy();
    close();
  }
}

/** A fetched stream's chunks, failing at the end unless they match its trailer. */
async function* verified(it: AsyncIterator<{ chunk?: { data?: Buffer }; trailer?: BackupTrailer }>): AsyncGenerator<Buffer> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) throw new CorruptDataError('the backup stream ended without its checksum');
    if (r.value.trailer) {
      const t = r.value.trailer;
      if (t.bytes !== bytes || !t.sha256 || Buffer.compare(Buffer.from(t.sha256), hash.digest()) !== 0) throw new CorruptDataError('the fetched backup does not match its checksum');
      return;
    }
    const data = r.value.chunk?.data;
    if (!data) throw new CorruptDataError('a backup stream sends chunks, then its trailer');
    hash.update(data);
    bytes += data.length;
    yield Buffer.from(data);
  }
}

const MAX_CONFIG = 256 * 1024;

/** The config a backup carries, checked as if typed (migrate/target.ts checks a migrated one the same way). */
function parseConfig(json: string): ContainerConfig {
  if (typeof json !== 'string' || json.length > MAX_CONFIG) throw new InvalidArgumentError('the backup\'s container config is missing or too large');
  let v: unknown;
  try { v = JSON.parse(json); } catch { throw new InvalidArgumentError('the backup\'s container config is not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError('the backup\'s container config is not an object');
  const c = v as ContainerConfig;
  if (typeof c.template !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(c.template)) throw new InvalidArgumentError('the backup\'s container config names no template by name');
  if (typeof c.net !== 'object' || c.net === null || typeof c.limits !== 'object' || c.limits === null) throw new InvalidArgumentError('the backup\'s container config lacks net or limits');
  return c;
}


