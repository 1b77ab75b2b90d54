import fs = require('node:fs');
import path = require('node:path');
import { CorruptDataError } from '../lib/errors';
import { PARENT_LINK, type PageStreamDigest } from '../checkpoint/archive';
import type { Sha256 } from '../archive/digest';
import { faultTamper } from '../lib/fault';
import type { PageLink } from './page-pump';

/*
 * Stop-and-copy's memory goes from the source's dump straight into a CRIU
 * page server on the target (checkpoint/criu/page-server.ts), never to a
 * file on the source. Each side counts and hashes the dump's bytes as they
 * pass; the source's figures go into the signed manifest, and the target
 * restores nothing unless its own match them.
 */

/**
 * The send of a dump's bytes to the target's page server over `channel`:
 * hashed (for the signed manifest) and counted as they go; the fault
 * `migrate:tamper-pages` alters them after the hash (tests).
 */
export function hashedSend(channel: PageLink, sha: Sha256, memory: { add(n: number): void }): (data: Buffer) => Promise<void> {
  return (data) => {
    sha.update(data);
    memory.add(data.length);
    return channel.send(faultTamper('migrate:tamper-pages', data));
  };
}

/** What passed through `sha` (one direction of a page stream), once it ended. */
export function streamDigest(sha: Sha256): PageStreamDigest {
  return { bytes: sha.size, sha256: sha.digest() };
}

/** The page images CRIU's page server writes (image-desc.c's names); nothing else in its directory is moved. */
const PAGE_IMAGE = /^(pagemap-(shmem-)?\d{1,20}|pages-\d{1,10})\.img$/;

/** The page streams of one migration: pre-copy's rounds in order (none for stop-and-copy), then the final dump's. */
export interface PageStreams {
  rounds: PageStreamDigest[];
  final?: PageStreamDigest;
}

/** Where round `n` (1, 2, ...) of pre-copy writes, in the staging directory; the final dump's images go to the staging directory itself. */
export function roundDir(n: number): string {
  return `pre-${n}`;
}

/**
 * Checks that the page streams received (`got`) are the ones the source's
 * signed manifest names (`sent`: every pre-copy round, then the last),
 * then moves their images from `staging` into `images` (the received
 * checkpoint's): the final dump's beside the archive's files, pre-copy's
 * rounds as the subdirectories its `parent` links lead to. A file the
 * archive brought under such a name is refused: the two would be two
 * versions of one image. Returns how many page images moved.
 */
export function completeWithPages(staging: string, images: string, sent: PageStreams, got: PageStreams, subject: string): number {
  if (!sent.final && !got.final && sent.rounds.length === 0 && got.rounds.length === 0) return 0;
  if (!sent.final) throw new CorruptDataError(`${subject} names no page stream, and one came`);
  if (!got.final) throw new CorruptDataError(`${subject} names memory sent to this host's page server, and none came`);
  if (sent.rounds.length !== got.rounds.length) throw new CorruptDataError(`${subject} names ${sent.rounds.length} pre-copy rounds, and ${got.rounds.length} came`);
  sent.rounds.forEach((s, i) => sameStream(s, got.rounds[i], `round ${i + 1} of the memory of ${subject}`));
  sameStream(sent.final, got.final, `the memory of ${subject}`);
  const rounds = got.rounds.map((_, i) => roundDir(i + 1));
  let moved = 0;
  for (const [i, dir] of rounds.entries()) moved += pageImages(path.join(staging, dir), `round ${i + 1} of ${subject}`, i === 0 ? undefined : `../${rounds[i - 1]}`).length;
  const names = pageImages(staging, subject, rounds.at(-1));
  moved += names.length;
  const clash = [...names, ...rounds, ...(rounds.length ? [PARENT_LINK] : [])].find((name) => fs.existsSync(path.join(images, name)));
  if (clash) throw new CorruptDataError(`${subject} carries ${clash}, which its page stream wrote too`);
  for (const name of names) moveFile(path.join(staging, name), path.join(images, name));
  for (const dir of rounds) fs.renameSync(path.join(staging, dir), path.join(images, dir));
  if (rounds.length) fs.symlinkSync(rounds.at(-1)!, path.join(images, PARENT_LINK));
  return moved;
}

function sameStream(sent: PageStreamDigest, got: PageStreamDigest, what: string): void {
  if (sent.bytes !== got.bytes) throw new CorruptDataError(`${what} is truncated or padded: ${got.bytes} bytes came, the source sent ${sent.bytes}`);
  if (sent.sha256 !== got.sha256) throw new CorruptDataError(`${what} is not what the source sent (its sha256 differs)`);
}

/**
 * The page images CRIU's page server wrote in `dir`, which must have some;
 * its `parent` link must lead to `parent` (the round before), if any.
 */
function pageImages(dir: string, subject: string, parent: string | undefined): string[] {
  const names = fs.readdirSync(dir).filter((name) => PAGE_IMAGE.test(name));
  if (names.length === 0) throw new CorruptDataError(`the page stream of ${subject} left no page images`);
  const link = (() => {
    try { return fs.readlinkSync(path.join(dir, PARENT_LINK)); } catch { return undefined; }
  })();
  if (link !== parent) throw new CorruptDataError(`the images of ${subject} do not lead to the round before (${link ?? 'no parent link'})`);
  return names;
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
