import fs = require('node:fs');
import path = require('node:path');
import { Sha256 } from '../archive/digest';

export interface FileDigest { size: number; sha256: string }

/**
 * The sha256 of the image files CRIU is writing in `dir` (its memory, the
 * bulk of a dump), taken while it writes them: CRIU appends to each and
 * never goes back, so what lies below a file's size is final. Run beside
 * a dump (the hashing on the other core), `finish()` once CRIU is done
 * reads what is left and gives each file's size and digest, so a manifest
 * need not read the images again inside the freeze. A wrong digest cannot
 * slip through: the receiver checks every byte against the manifest.
 */
export function followDigests(dir: string, pattern = /^pages-\d+\.img$/): { finish(): Promise<Map<string, FileDigest>>; stop(): Promise<void> } {
  const files = new Map<string, { fh: fs.promises.FileHandle; sha: Sha256 }>();
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  let stopping = false;
  const catchUp = async (): Promise<void> => {
    let names: string[];
    try { names = await fs.promises.readdir(dir); } catch { return; }
    for (const name of names) {
      if (!pattern.test(name)) continue;
      let f = files.get(name);
      if (!f) {
        try { f = { fh: await fs.promises.open(path.join(dir, name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW), sha: new Sha256() }; } catch { continue; }
        files.set(name, f);
      }
      for (;;) {
        const { size } = await f.fh.stat();
        if (f.sha.size >= size) break;
        const { bytesRead } = await f.fh.read(buf, 0, Math.min(buf.length, size - f.sha.size), f.sha.size);
        if (bytesRead === 0) break;
        f.sha.update(buf.subarray(0, bytesRead));
      }
    }
  };
  const loop = (async () => {
    while (!stopping) {
      await catchUp();
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const close = async () => { for (const f of files.values()) await f.fh.close().catch(() => undefined); };
  return {
    finish: async () => {
      stopping = true;
      await loop;
      try {
        await catchUp();
        return new Map([...files].map(([name, f]) => [name, { size: f.sha.size, sha256: f.sha.digest() }]));
      } finally {
        await close();
      }
    },
    stop: async () => {
      stopping = true;
      await loop.catch(() => undefined);
      await close();
    },
  };
}
