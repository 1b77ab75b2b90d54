import fs = require('node:fs');
import { InvalidArgumentError, LimitError, NotFoundError, TsvzError } from '../../lib/errors';
import type { Template } from './index';

/** How far a rootfs tarball may go unless the operator says otherwise (the extractor's defaults otherwise). */
const LIMIT_ENV = { maxBytes: 'TSVZ_TARBALL_MAX_BYTES', maxEntries: 'TSVZ_TARBALL_MAX_ENTRIES' } as const;

/** tar:FILE — a rootfs tarball, extracted with the hardened extractor. */
export class TarballTemplate implements Template {
  readonly name: string;
  readonly defaults = { init: ['/sbin/init'], stopSignal: 'SIGTERM' };

  constructor(private readonly file: string) {
    this.name = `tar:${file}`;
    if (!fs.existsSync(file)) throw new NotFoundError(`tarball ${file} does not exist`);
  }

  async populate(rootfs: string): Promise<void> {
    const { extractTarball } = await import('../../archive/tar-extract');
    try {
      await extractTarball(this.file, rootfs, limitsFromEnv());
    } catch (err) {
      if (err instanceof TsvzError && err.code === 'ELIMIT') {
        throw new LimitError(err.message, `if the tarball is trusted, raise the limit: ${LIMIT_ENV.maxBytes}=BYTES or ${LIMIT_ENV.maxEntries}=N`);
      }
      throw err;
    }
  }
}

function limitsFromEnv(): { maxBytes?: number; maxEntries?: number } {
  const limits: { maxBytes?: number; maxEntries?: number } = {};
  for (const [key, name] of Object.entries(LIMIT_ENV) as [keyof typeof LIMIT_ENV, string][]) {
    const text = process.env[name];
    if (text === undefined) continue;
    if (!/^\d+$/.test(text) || Number(text) <= 0) throw new InvalidArgumentError(`${name}=${text} is not a positive integer`);
    limits[key] = Number(text);
  }
  return limits;
}
