import fs = require('node:fs');
import path = require('node:path');

/**
 * Write a file so that readers see either the old or the new content, never
 * a torn one, even across a crash: temp file, fsync, rename. The directory
 * is not fsynced (a second journal commit on each state change): a crash
 * right after the rename may bring back the previous content, whole. The
 * fsync runs on a worker thread: while other writes fill the journal it can
 * take long, and a daemon's other calls must not wait for it.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = tempPathFor(file);
  const handle = await fs.promises.open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
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

  static async prepare(file: string, size = 4096, mode = 0o644): Promise<AtomicFileSlot> {
    const tmp = tempPathFor(file);
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.writeSync(fd, Buffer.alloc(size, 0x20));
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
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
      await writeFileAtomic(this.file, data);
      return;
    }
    this.fd = undefined;
    try {
      const padded = Buffer.alloc(this.size, 0x20);
      data.copy(padded);
      fs.writeSync(fd, padded, 0, padded.length, 0);
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
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

export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  return writeFileAtomic(file, jsonText(value));
}

/**
 * The same, synchronously, for the rare caller that cannot wait (it blocks
 * the event loop for the fsync: nothing a daemon runs may use it).
 */
export function writeJsonAtomicSync(file: string, value: unknown): void {
  const tmp = tempPathFor(file);
  const fd = fs.openSync(tmp, 'wx', 0o644);
  try {
    fs.writeSync(fd, jsonText(value));
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** The text of a JSON state file: indented, with a final newline. */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

let writes = 0;

/** Unique per write: a daemon may write one file twice in the same millisecond. */
function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.${++writes}.tmp`);
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
