import fs = require('node:fs');
import path = require('node:path');
import { CorruptDataError } from '../lib/errors';
import type { PageStreamDigest } from '../checkpoint/archive';
import type { Sha256 } from '../archive/digest';

/*
 * Stop-and-copy's memory goes from the source's dump straight into a CRIU
 * page server on the target (checkpoint/criu/page-server.ts), never to a
 * file on the source. Each side counts and hashes the dump's bytes as they
 * pass; the source's figures go into the signed manifest, and the target
 * restores nothing unless its own match them.
 */

/** What passed through `sha` (one direction of a page stream), once it ended. */
export function streamDigest(sha: Sha256): PageStreamDigest {
  return { bytes: sha.size, sha256: sha.digest() };
}

/** The page images CRIU's page server writes (image-desc.c's names); nothing else in its directory is moved. */
const PAGE_IMAGE = /^(pagemap-(shmem-)?\d{1,20}|pages-\d{1,10})\.img$/;

/**
 * Checks that the page stream received (`got`) is the one the source's
 * signed manifest names (`sent`), then moves its images from `staging`
 * into `images` (the received checkpoint's). A file the archive brought
 * under a page image's name is refused: the two would be two versions of
 * one image. Returns how many images moved.
 */
export function completeWithPages(staging: string, images: string, sent: PageStreamDigest | undefined, got: PageStreamDigest | undefined, subject: string): number {
  if (!sent && !got) return 0;
  if (!sent) throw new CorruptDataError(`${subject} names no page stream, and one came`);
  if (!got) throw new CorruptDataError(`${subject} names memory sent to this host's page server, and none came`);
  if (sent.bytes !== got.bytes) throw new CorruptDataError(`the memory of ${subject} is truncated or padded: ${got.bytes} bytes came, the source sent ${sent.bytes}`);
  if (sent.sha256 !== got.sha256) throw new CorruptDataError(`the memory of ${subject} is not what the source sent (its sha256 differs)`);
  const names = fs.readdirSync(staging).filter((name) => PAGE_IMAGE.test(name));
  if (names.length === 0) throw new CorruptDataError(`the page stream of ${subject} left no page images`);
  const clash = names.find((name) => fs.existsSync(path.join(images, name)));
  if (clash) throw new CorruptDataError(`${subject} carries ${clash}, which its page stream wrote too`);
  for (const name of names) moveFile(path.join(staging, name), path.join(images, name));
  return names.length;
}

function moveFile(src: string, dest: string): void {
  try {
    fs.renameSync(src, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    fs.copyFileSync(src, dest, fs.constants.COPYFILE_EXCL);
    fs.rmSync(src);
  }
}
