import type { Container } from '../runtime/container';
import { ArchiveManifest, writeCheckpointArchive } from '../checkpoint/archive';
import { CheckpointCatalog } from '../checkpoint/catalog';

/** `tsvz checkpoint export`: the checkpoint (newest when no id), its meta and the container's config as one archive. */
export async function exportCheckpoint(c: Container, id: string | undefined, file: string): Promise<ArchiveManifest> {
  const catalog = new CheckpointCatalog(c);
  const meta = catalog.get(id);
  return writeCheckpointArchive(file, catalog.dir(meta.id), meta, c.config);
}
