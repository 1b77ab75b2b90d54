import fs = require('node:fs');
import path = require('node:path');
import { NotSupportedError } from '../lib/errors';
import type { ContainerConfig, IdMapConfig } from '../runtime/config';
import { DEV_IMAGE, DevImage } from './dev-tmpfs';
import { IdExtent, readUsernsImage, UsernsImage, writeUsernsImage } from './images';

/**
 * A checkpoint carries the host ids of the user namespace it was dumped in
 * (CRIU's userns image; every other image holds ids as the container sees
 * them) and tsvz's list of /dev (host ids). A restore into a container with
 * another range (an import, another host's free range) remaps both to the
 * container's range first, as long as the sizes agree; a checkpoint of a
 * privileged container is not restored into a user-namespaced one, nor the
 * other way round: its processes' ids would mean other users.
 */
export function prepareIdMap(dir: string, id: string, cfg: ContainerConfig): { remapped: boolean } {
  const image = readUsernsImage(dir);
  if (!cfg.idmap) {
    if (image) {
      throw new NotSupportedError(`checkpoint ${id} was taken in a user namespace, and container ${cfg.name} is privileged (has none)`, 'restore it into a container made without --privileged');
    }
    return { remapped: false };
  }
  if (!image) {
    throw new NotSupportedError(`checkpoint ${id} was taken of a privileged container, and container ${cfg.name} has a user namespace`, 'restore it into a container made with --privileged');
  }
  const from = singleRange(image, id);
  const to = cfg.idmap;
  if (from.size !== to.size) {
    throw new NotSupportedError(`checkpoint ${id} maps ${from.size} ids, container ${cfg.name} ${to.size}`, 'restore it into a container with a range of the same size');
  }
  if (from.uid === to.uid && from.gid === to.gid) return { remapped: false };
  remapDevImage(dir, from, to);
  writeUsernsImage({ ...image, uid: [{ first: 0, lowerFirst: to.uid, count: to.size }], gid: [{ first: 0, lowerFirst: to.gid, count: to.size }] });
  return { remapped: true };
}

/** The one range tsvz maps (0..size inside); anything else was not made by tsvz. */
function singleRange(image: UsernsImage, id: string): { uid: number; gid: number; size: number } {
  const one = (m: IdExtent[]) => (m.length === 1 && m[0].first === 0 && m[0].count > 0 ? m[0] : undefined);
  const u = one(image.uid);
  const g = one(image.gid);
  if (!u || !g || u.count !== g.count) {
    throw new NotSupportedError(`checkpoint ${id}'s user namespace maps its ids in a way tsvz does not make (uid_map ${JSON.stringify(image.uid)})`);
  }
  return { uid: u.lowerFirst, gid: g.lowerFirst, size: u.count };
}

/** tsvz-dev.json's owners (host ids) into the new range; ids outside the old one stay. Idempotent. */
function remapDevImage(dir: string, from: { uid: number; gid: number; size: number }, to: IdMapConfig): void {
  const file = path.join(dir, DEV_IMAGE);
  if (!fs.existsSync(file)) return;
  const image = JSON.parse(fs.readFileSync(file, 'utf8')) as DevImage;
  const uid = (id: number) => (id >= from.uid && id < from.uid + from.size ? id - from.uid + to.uid : id);
  const gid = (id: number) => (id >= from.gid && id < from.gid + from.size ? id - from.gid + to.gid : id);
  image.root = { ...image.root, uid: uid(image.root.uid), gid: gid(image.root.gid) };
  image.entries = image.entries.map((e) => ({ ...e, uid: uid(e.uid), gid: gid(e.gid) }));
  image.options = image.options.replace(/\b(uid|gid)=(\d+)/g, (_, k: string, v: string) => `${k}=${k === 'uid' ? uid(Number(v)) : gid(Number(v))}`);
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(image));
  fs.renameSync(tmp, file);
}
