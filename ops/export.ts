import fs = require('node:fs');
import path = require('node:path');
import type { Container } from '../runtime/container';
import { ArchiveManifest, writeCheckpointArchive } from '../checkpoint/archive';
import type { ArchiveSigner } from '../checkpoint/archive-signature';
import { CheckpointCatalog } from '../checkpoint/catalog';
import { CriuClient } from '../checkpoint/criu/client';

/** CRIU's description of the CPU a checkpoint was dumped on, which an importer checks against its own. */
export const CPUINFO_IMAGE = 'cpuinfo.img';

/**
 * `tsvz checkpoint export`: the checkpoint (newest when no id), its meta and
 * the container's config as one archive, signed by `signer` (this host).
 * It carries CRIU's cpuinfo image of this host's CPU (the checkpoint was
 * dumped here, unless it was imported: then the CPU it came from).
 */
export async function exportCheckpoint(c: Container, id: string | undefined, file: string, signer?: ArchiveSigner): Promise<ArchiveManifest> {
  const catalog = new CheckpointCatalog(c);
  const meta = catalog.get(id);
  const dir = catalog.dir(meta.id);
  await describeCpuIn(dir);
  return writeCheckpointArchive(file, dir, meta, c.config, signer);
}

/** This host's cpuinfo image in image directory `dir`, unless it has one (an imported checkpoint's is the CPU it came from). */
export async function describeCpuIn(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, CPUINFO_IMAGE))) return;
  const fd = fs.openSync(dir, 'r');
  try {
    await new CriuClient().cpuinfoDump(fd);
  } finally {
    fs.closeSync(fd);
  }
  // Its log is this host's business, not the archive's.
  fs.rmSync(path.join(dir, 'cpuinfo-dump.log'), { force: true });
}
