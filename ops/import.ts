import fs = require('node:fs');
import path = require('node:path');
import type { Readable } from 'node:stream';
import { Container } from '../runtime/container';
import os = require('node:os');
import { AlreadyExistsError, CorruptDataError, InvalidArgumentError, InvalidStateError, NotSupportedError } from '../lib/errors';
import { createContainer, specLike } from './create';
import { destroyContainer } from './destroy';
import type { Root } from '../lib/root';
import { ContainerState } from '../runtime/state';
import { withUndo } from '../lib/undo';
import { ArchiveManifest, archiveVoice, extractCheckpointArchive, receiveCheckpoint } from '../checkpoint/archive';
import type { ArchiveTrust } from '../checkpoint/archive-signature';
import { CriuClient } from '../checkpoint/criu/client';
import { CriuError } from '../checkpoint/criu/errors';
import { checkForeignDev } from '../checkpoint/dev-tmpfs';
import { CPUINFO_IMAGE } from './export';
import { CheckpointCatalog, CheckpointMeta, directorySize } from '../checkpoint/catalog';
import { compareVersions, formatVersion, parseVersion, requireCriu } from '../checkpoint/criu/version';
import { restoreContainer } from './restore';
import { lockContainer } from './recovery';

export interface Imported {
  container: Container;
  meta: CheckpointMeta;
  /** The container was made by the import (from the archive's config and template). */
  created: boolean;
  /** The trusted host that signed the archive; undefined when an unsigned one was accepted. */
  signer?: string;
  /** The kernel the checkpoint was dumped on, when it is not this host's. */
  otherKernel?: string;
}

/** A checkpoint archive arriving as a stream (a peer's upload), and how to speak of it ("the checkpoint sent by host-a"). */
export interface ArchiveStream {
  stream: Readable;
  label: string;
}

export interface ImportOptions {
  /** Bytes the archive's files may hold (default: the archive format's limit). */
  maxBytes?: number;
  /** Whose archives are accepted: this host and the hosts it trusts (daemon/signers.ts). */
  trust: ArchiveTrust;
  /**
   * Accept an archive of a privileged container (no user namespace): its
   * processes would run as the host's root here. Without it such an archive
   * is refused before anything is created.
   */
  privileged?: boolean;
  /**
   * Runs on the received images (checked against the signed manifest)
   * before anything else looks at them: a migration adds the memory its
   * page server received beside the archive, after checking it against
   * the manifest's pageStream.
   */
  completeImages?: (images: string, manifest: ArchiveManifest) => void | Promise<void>;
}

/**
 * Bring the checkpoint in archive `file` into container `name`'s catalog.
 * The archive carries CRIU's images and the source's config, not its files:
 * the restore runs on `name`'s own rootfs. An existing `name` must be
 * stopped and is trusted to hold the same filesystem; a missing one is
 * created from the source's template with the source's config (renamed,
 * hostname kept). Changes made to the source's files after it was created
 * are therefore not carried over; that needs a snapshot of its rootfs.
 * The archive is hostile until proven otherwise, and all of it is checked in
 * a scratch directory before anything else changes: who signed it (a host
 * `opts.trust` names), every entry against the manifest, every field of the
 * config as if a stranger typed it (the template a name, never a path here),
 * the /dev list, and the CPU it was dumped on against this one (CRIU's
 * cpuinfo check). Any failure leaves nothing behind.
 */
export async function importCheckpoint(root: Root, name: string, source: string | ArchiveStream, opts: ImportOptions): Promise<Imported> {
  const c = new Container(root, name);
  root.ensure();
  const version = await requireCriu('4.1');
  const file = typeof source === 'string' ? `archive ${source}` : source.label;
  const receive = {
    trust: opts.trust,
    maxBytes: opts.maxBytes,
    onManifest: (m: ArchiveManifest) => {
      checkForeignConfig(m, file);
      if (compareVersions(version, parseVersion(m.checkpoint.criuVersion)) < 0) {
        throw new NotSupportedError(
          `${file} holds a checkpoint made by CRIU ${m.checkpoint.criuVersion}, newer than this host's ${formatVersion(version)}`,
          'restore it on a host with that CRIU or newer',
        );
      }
      checkPrivilege(file, m, opts);
      if (c.exists()) checkTarget(c, m);
    },
  };
  const scratch = typeof source === 'string'
    ? await extractCheckpointArchive(source, root.cacheDir, receive)
    : await receiveCheckpoint(source.stream, root.cacheDir, { ...receive, voice: archiveVoice(source.label, 'peer') });
  try {
    const images = path.join(scratch.dir, 'images');
    if (scratch.manifest.pageStream && !opts.completeImages) throw new CorruptDataError(`${file} names memory sent to a page server, and none was`);
    await opts.completeImages?.(images, scratch.manifest);
    checkForeignDev(images);
    await checkCpu(images, file);
    return await withUndo(async (undo) => {
      const m = scratch.manifest;
      let created = false;
      if (!c.exists()) {
        await createFrom(root, name, m);
        created = true;
        undo.add(`destroy ${name}`, () => destroyContainer(root, name, true));
      }
      const meta = await lockContainer(c, async () => {
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
          importedFrom: { archive: typeof source === 'string' ? path.resolve(source) : source.label, importedAt: new Date().toISOString() },
        };
        await catalog.save(imported);
        return imported;
      });
      const otherKernel = m.checkpoint.kernel !== os.release() ? m.checkpoint.kernel : undefined;
      return { container: c, meta, created, signer: scratch.signer, otherKernel };
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
export async function restoreImported(root: Root, name: string, file: string, opts: ImportOptions): Promise<{ state: ContainerState; imported: Imported }> {
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

/**
 * The archive's config names what a new container is made of: its template
 * must be one of this host's by name (a `tar:` template would open a file of
 * this host's choosing by the archive's author), and its pool is not the
 * archive's to choose. The rest passes create's own checks later.
 */
function checkForeignConfig(m: ArchiveManifest, file: string): void {
  const template = m.config.template;
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(template)) {
    throw new InvalidArgumentError(`${file} names the template ${JSON.stringify(template.slice(0, 80))}, which is not a template name`, 'an archive may name busybox or debian; it never names a file on this host');
  }
}

/** Refuse a checkpoint dumped on a CPU this one cannot run it on (CRIU's check of the archive's cpuinfo image). */
async function checkCpu(images: string, file: string): Promise<void> {
  if (!fs.existsSync(path.join(images, CPUINFO_IMAGE))) {
    throw new CorruptDataError(`${file} carries no ${CPUINFO_IMAGE}`, 'export it again with this tsvz: an import checks the CPU it was made on');
  }
  const fd = fs.openSync(images, 'r');
  try {
    await new CriuClient().cpuinfoCheck(fd);
  } catch (err) {
    const why = err instanceof CriuError ? err.errorLines.find((l) => !/cpuinfo check failed|FAILED/i.test(l)) ?? err.message : (err as Error).message;
    throw new NotSupportedError(`${file} was dumped on a CPU this host cannot run it on: ${why.replace(/^Error \([^)]*\): /, '')}`, 'restore it on a host with the same CPU features');
  } finally {
    fs.closeSync(fd);
    for (const log of ['cpuinfo-check.log']) fs.rmSync(path.join(images, log), { force: true });
  }
}

/** A privileged archive only with opts.privileged, and only that: the checkpoint restores into its own kind of container. */
function checkPrivilege(file: string, m: ArchiveManifest, opts: ImportOptions): void {
  const privileged = m.config.idmap === undefined;
  if (privileged && !opts.privileged) {
    throw new NotSupportedError(`${file} holds a checkpoint of a privileged container (no user namespace): its processes would run as this host's root`, 'pass --privileged to accept that');
  }
  if (!privileged && opts.privileged) {
    throw new NotSupportedError(`${file} holds a checkpoint taken in a user namespace: it restores only into a container with one`, 'drop --privileged');
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
  // A range of this host's, whatever the source's was: the restore remaps the checkpoint to it.
  await createContainer(root, name, specLike(m.config));
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
