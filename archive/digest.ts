import crypto = require('node:crypto');
import fs = require('node:fs');
import { Transform, type TransformCallback } from 'node:stream';

/**
 * sha256 computed while data streams past, so verifying an archive entry
 * or a file costs no second read and no buffering.
 */

/** A running sha256 and byte count. */
export class Sha256 {
  private readonly hash = crypto.createHash('sha256');
  private hex?: string;
  size = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  /** The hex digest; the hash takes no more data after this. */
  digest(): string {
    return (this.hex ??= this.hash.digest('hex'));
  }

  /** Pass `source` through unchanged, hashing it on the way. */
  async *through(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      this.update(buf);
      yield buf;
    }
  }
}

/** A pipeline stage that hashes what passes through it: `pipeline(src, hashing, dst)`, then `hashing.sha256.digest()`. */
export class Sha256Stream extends Transform {
  readonly sha256 = new Sha256();

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.sha256.update(chunk);
    cb(null, chunk);
  }
}

export function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** A file's size and sha256, read once as a stream. */
export async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const sha = new Sha256();
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 256 * 1024 })) sha.update(chunk as Buffer);
  return { size: sha.size, sha256: sha.digest() };
}
