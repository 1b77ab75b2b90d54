import fs = require('node:fs');
import path = require('node:path');

/**
 * Where CRIU writes its logs: a work directory beside the checkpoints, not
 * inside them, so the log of a failed dump outlives the partial images we
 * remove, and the path the error names exists. A failed operation's log is
 * kept there for the user. A successful dump's log moves in with its images
 * (dump.log, as runc keeps it), gone with the checkpoint; a successful
 * restore's is removed, its statistics kept with the images it restored
 * (stats-restore, as runc leaves them). Removing a dump's log at once was slow: at 2 GiB it is
 * 3 MB whose pages are still being written back, and the unlink waited for
 * them (70 ms here).
 */
export class CriuLogs {
  readonly dir: string;

  constructor(containerDir: string) {
    this.dir = path.join(containerDir, 'criu-logs');
  }

  /** An fd of the directory, for CRIU's work_dir_fd (the caller closes it). */
  open(): number {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    return fs.openSync(this.dir, 'r');
  }

  fileName(operation: 'dump' | 'restore', id: string): string {
    return `${operation}-${id}.log`;
  }

  /**
   * After a successful restore: forget its log, and move CRIU's stats-restore
   * (CRIU writes stats-* into its work dir) in with the images it restored.
   */
  restored(id: string, imagesDir: string): void {
    fs.rmSync(path.join(this.dir, this.fileName('restore', id)), { force: true });
    moveIfExists(path.join(this.dir, RESTORE_STATS), path.join(imagesDir, RESTORE_STATS));
  }

  /**
   * Move a successful dump's log and CRIU's stats-dump image in with its
   * images: `checkpoint list` reads the statistics there, and both go with the
   * checkpoint.
   */
  keepWithImages(id: string, imagesDir: string): void {
    this.keepStatsWith(imagesDir);
    moveIfExists(path.join(this.dir, this.fileName('dump', id)), path.join(imagesDir, DUMP_LOG));
  }

  /** Move CRIU's stats-dump of the (pre-)dump that just ended in with its images. */
  keepStatsWith(imagesDir: string): void {
    moveIfExists(path.join(this.dir, 'stats-dump'), path.join(imagesDir, 'stats-dump'));
  }
}

/** A successful dump's log, in the checkpoint's directory. */
export const DUMP_LOG = 'dump.log';
/** CRIU's statistics of the last successful restore of a checkpoint, in its directory. */
export const RESTORE_STATS = 'stats-restore';

function moveIfExists(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
