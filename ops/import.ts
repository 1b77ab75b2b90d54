import fs = require('node:fs');
import path = require('node:path');
import { Container } from '../runtime/container';
import { AlreadyExistsError, InvalidStateError, NotSupportedError } from '../lib/errors';
import { createContainer } from './create';
import { destroyContainer } from './destroy';
import type { Root } from '../lib/root';
import { ContainerState } from '../runtime/state';
import { withUndo } from '../lib/undo';
import { ArchiveManifest, extractCheckpointArchive } from '../checkpoint/archive';
import { CheckpointCatalog, CheckpointMeta, directorySize } from '../checkpoint/catalog';
import { compareVersions, formatVersion, parseVersion, requireCriu } from '../checkpoint/criu/version';
import { restoreContainer } from './restore';

export interface Imported {
  container: Container;
  meta: CheckpointMeta;
  /** The container was made by the import (from the archive's config and template). */
  created: boolean;
}

/**
 * Bring the checkpoint in archive `file` into container `name`'s catalog.
 * The archive carries CRIU's images and the source's config, not its files:
 * the restore runs on `name`'s own rootfs. An existing `name` must be
 * stopped and is trusted to hold the same filesystem; a missing one is
 * created from the source's template with the source's config (renamed,
 * hostname kept). Changes made to the source's files after it was created
 * are therefore not carried over; that needs a snapshot of its rootfs.
 * The archive is verified (manifest checksums, no unsafe or unlisted
 * entries) in a scratch directory before anything else changes; any failure
 * leaves nothing behind.
 */
export interface ImportOptions {
  /**
   * Accept an archive of a privileged container (no user namespace): its
   * processes would run as the host's root here. Without it such an archive
   * is refused before anything is created.
   */
  privileged?: boolean;
}

export async function importCheckpoint(root: Root, name: string, file: string, opts: ImportOptions = {}): Promise<Imported> {
  const c = new Container(root, name);
  root.ensure();
  const version = await requireCriu('4.1');
  const scratch = await extractCheckpointArchive(file, root.cacheDir, {
    onManifest: (m) => {
      if (compareVersions(version, parseVersion(m.checkpoint.criuVersion)) < 0) {
        throw new NotSupportedError(
          `archive ${file} holds a checkpoint made by CRIU ${m.checkpoint.criuVersion}, newer than this host's ${formatVersion(version)}`,
          'restore it on a host with that CRIU or newer',
        );
      }
      checkPrivilege(file, m, opts);
      if (c.exists()) checkTarget(c, m);
    },
  });
  try {
    return await withUndo(async (undo) => {
      const m = scratch.manifest;
      let created = false;
      if (!c.exists()) {
        await createFrom(root, name, m);
        created = true;
        undo.add(`destroy ${name}`, () => destroyContainer(root, name, true));
      }
      const meta = await c.locked(async () => {
        checkTarget(c, m);
        const catalog = new CheckpointCatalog(c);
        const dest = catalog.dir(m.checkpoint.id);
        fs.mkdirSync(catalog.root, { recursive: true, mode: 0o700 });
        moveDir(path.join(scratch.dir, 'images'), dest);
        undo.add('remove imported checkpoint', () => fs.rmSync(dest, { recursive: true, force: true }));
        // Only the fields we know, as parseManifest checked them (an archive's own importedFrom is dropped).
        const { id, container, createdAt, criuVersion, kernel, leaveRunning, tcpEstablished, dumpMs } = m.checkpoint;
        const stats = Object.fromEntries((['frozenMs', 'memdumpMs', 'memwriteMs', 'pagesWritten'] as const)
          .filter((k) => typeof m.checkpoint[k] === 'number').map((k) => [k, m.checkpoint[k]]));
        const imported: CheckpointMeta = {
          id, container, createdAt, criuVersion, kernel, leaveRunning, tcpEstablished, dumpMs, ...stats,
          sizeBytes: directorySize(dest),
          importedFrom: { archive: path.resolve(file), importedAt: new Date().toISOString() },
        };
        await catalog.save(imported);
        return imported;
      });
      return { container: c, meta, created };
    });
  } finally {
    fs.rmSync(scratch.dir, { recursive: true, force: true });
  }
}

/**
 * `tsvz restore NAME --import FILE`: import, then restore. A refused archive
 * leaves nothing behind; when CRIU fails, the container and the imported
 * checkpoint stay (like any failed restore) so its log can be read and the
 * restore retried.
 */
export async function restoreImported(root: Root, name: string, file: string, opts: ImportOptions = {}): Promise<{ state: ContainerState; imported: Imported }> {
  const imported = await importCheckpoint(root, name, file, opts);
  try {
    return { state: await restoreContainer(imported.container, imported.meta.id), imported };
  } catch (err) {
    if (err instanceof Error) {
      err.message += ` (the imported checkpoint ${imported.meta.id} stays in ${name}: retry with \`tsvz restore ${name}\`, or remove it with \`tsvz ${imported.created ? `destroy ${name}` : `checkpoint rm ${name} ${imported.meta.id}`}\`)`;
    }
    throw err;
  }
}

/** A privileged archive only with opts.privileged, and only that: the checkpoint restores into its own kind of container. */
function checkPrivilege(file: string, m: ArchiveManifest, opts: ImportOptions): void {
  const privileged = m.config.idmap === undefined;
  if (privileged && !opts.privileged) {
    throw new NotSupportedError(`archive ${file} holds a checkpoint of a privileged container (no user namespace): its processes would run as this host's root`, 'pass --privileged to accept that');
  }
  if (!privileged && opts.privileged) {
    throw new NotSupportedError(`archive ${file} holds a checkpoint taken in a user namespace: it restores only into a container with one`, 'drop --privileged');
  }
}

/** An existing target must be stopped, of the archive's kind (privileged or not), and must not already hold this checkpoint id. */
function checkTarget(c: Container, m: ArchiveManifest): void {
  if ((c.config.idmap === undefined) !== (m.config.idmap === undefined)) {
    throw new NotSupportedError(
      `container ${c.name} is ${c.config.idmap ? 'unprivileged' : 'privileged'} and the archive's checkpoint is of a ${m.config.idmap ? 'unprivileged' : 'privileged'} container`,
      'import under a new name',
    );
  }
  const status = c.state().status;
  if (status === 'running' || status === 'starting') {
    throw new InvalidStateError(`container ${c.name} is running`, 'stop it first, or import under a new name');
  }
  if (new CheckpointCatalog(c).list().some((x) => x.id === m.checkpoint.id)) {
    throw new AlreadyExistsError(`container ${c.name} already has a checkpoint "${m.checkpoint.id}"`, `remove it with \`tsvz checkpoint rm ${c.name} ${m.checkpoint.id}\``);
  }
}

/**
 * A new container like the archive's source: made by create from the
 * source's template and settings (so every value is checked as if typed on
 * the command line), under the new name, with the source's hostname.
 */
async function createFrom(root: Root, name: string, m: ArchiveManifest): Promise<void> {
  const src = m.config;
  const limits = { memoryBytes: src.limits.memoryBytes, cpus: src.limits.cpus, pids: src.limits.pids };
  await createContainer(root, name, {
    template: src.template,
    init: src.init,
    hostname: src.hostname,
    limits,
    net: src.net.mode === 'bridge' ? { mode: 'bridge', address: src.net.address, bridge: src.net.bridge } : { mode: 'none' },
    env: src.env,
    stopSignal: src.stopSignal,
    // A range of this host's, whatever the source's was: the restore remaps the checkpoint to it.
    privileged: src.idmap === undefined,
    sharedIdmap: src.idmap?.shared === true,
    allowSyscalls: src.allowSyscalls,
  });
}

/** Rename, or copy when the scratch dir is on another filesystem than the container (its own volume). */
function moveDir(src: string, dest: string): void {
  try {
    fs.renameSync(src, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    fs.cpSync(src, dest, { recursive: true, errorOnExist: true, force: false });
  }
}
