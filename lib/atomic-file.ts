import fs = require('node:fs');
import path = require('node:path');

/**
 * Write a file so that readers see either the old or the new content, never
 * a torn one, even across a crash: temp file, fsync, rename. The directory
 * is not fsynced (a second journal commit, ~1 ms on each state change): a
 * crash right after the rename may bring back the previous content, whole.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  const tmp = tempPathFor(file);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    if (typeof data === 'string') fs.writeSync(fd, data);
    else fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * An atomic write whose temp file is made, filled and made durable ahead of
 * time: for a record written just after a burst of writes to the same
 * filesystem, such as a checkpoint's record after CRIU wrote its images. A
 * sync write then waits for the device to flush what the burst left
 * (55-70 ms after a 2 GiB dump here, more than tsvz's whole start-up).
 * prepare() fills the temp file with `size` spaces and fsyncs it while the
 * filesystem is quiet. startFlush() runs an fdatasync of it in the
 * background as soon as the burst is over, so that wait overlaps other work
 * (CRIU killing the dumped tree). commit() then overwrites the spaces in
 * place (the text, padded with spaces: JSON allows trailing whitespace), so
 * neither size nor blocks change and its fdatasync writes one block, and
 * renames. A text longer than the slot is written the ordinary way.
 */
export class AtomicFileSlot {
  private fd: number | undefined;
  private flushing: Promise<void> | undefined;

  private constructor(readonly file: string, private readonly tmp: string, fd: number, private readonly size: number) {
    this.fd = fd;
  }

  static prepare(file: string, size = 4096, mode = 0o644): AtomicFileSlot {
    const tmp = tempPathFor(file);
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.writeSync(fd, Buffer.alloc(size, 0x20));
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    return new AtomicFileSlot(file, tmp, fd, size);
  }

  /** fdatasync in the background (a failure is left to commit's own fdatasync). */
  startFlush(): void {
    const fd = this.fd;
    if (fd === undefined || this.flushing) return;
    this.flushing = new Promise((resolve) => fs.fdatasync(fd, () => resolve()));
  }

  async commit(text: string): Promise<void> {
    await this.flushing;
    const fd = this.fd;
    if (fd === undefined) throw new Error(`${this.file}: slot already used`);
    const data = Buffer.from(text);
    if (data.length > this.size) {
      await this.discard();
      writeFileAtomic(this.file, data);
      return;
    }
    this.fd = undefined;
    try {
      const padded = Buffer.alloc(this.size, 0x20);
      data.copy(padded);
      fs.writeSync(fd, padded, 0, padded.length, 0);
      fs.fdatasyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(this.tmp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    try {
      fs.renameSync(this.tmp, this.file);
    } catch (err) {
      fs.rmSync(this.tmp, { force: true });
      throw err;
    }
  }

  /** Remove the temp file unused (idempotent); after a background flush has ended, which still uses the fd. */
  async discard(): Promise<void> {
    await this.flushing;
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
    fs.rmSync(this.tmp, { force: true });
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, jsonText(value));
}

/** The text of a JSON state file: indented, with a final newline. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
}

/** Read JSON, or undefined when the file does not exist. */
export function readJsonIfExists<T>(file: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as T;
}
