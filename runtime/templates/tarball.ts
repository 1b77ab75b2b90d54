import fs = require('node:fs');
import { NotFoundError } from '../../lib/errors';
import type { Template } from './index';

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
    await extractTarball(this.file, rootfs);
  }
}
