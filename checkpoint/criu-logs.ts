import fs = require('node:fs');
import path = require('node:path');

/**
 * Where CRIU writes its logs: a work directory beside the checkpoints, not
 * inside them, so the log of a failed dump outlives the partial images we
 * remove, and the path the error names exists. A successful operation's log
 * is removed; a failed one's is kept for the user.
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

  /** Forget a successful operation's log and statistics image (CRIU writes stats-* into its work dir). */
  discard(operation: 'dump' | 'restore', id: string): void {
    fs.rmSync(path.join(this.dir, this.fileName(operation, id)), { force: true });
    fs.rmSync(path.join(this.dir, `stats-${operation}`), { force: true });
  }

  /** Move CRIU's stats-dump image beside the checkpoint's images, where `checkpoint list` reads it. */
  keepDumpStats(imagesDir: string): void {
    try {
      fs.renameSync(path.join(this.dir, 'stats-dump'), path.join(imagesDir, 'stats-dump'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
