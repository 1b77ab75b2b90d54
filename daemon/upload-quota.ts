import fs = require('node:fs');
import path = require('node:path');
import { LimitError } from '../lib/errors';
import type { Root } from '../lib/root';
import type { DaemonLimits } from './limits';

/**
 * The disk quota of uploads (ROOT/daemon/incoming/): all uploads in
 * progress together hold at most uploadQuotaBytes, and none may take the
 * root's filesystem below reserveBytes free. Leftovers of a daemon that died
 * mid-upload are removed when the next one starts.
 */
export class UploadQuota {
  readonly dir: string;
  private used = 0;

  constructor(root: Root, private readonly limits: DaemonLimits) {
    this.dir = path.join(root.dir, 'daemon', 'incoming');
    fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  open(): { grow(bytes: number): Promise<void>; release(): void } {
    let mine = 0;
    return {
      grow: async (bytes: number) => {
        if (this.used + bytes > this.limits.uploadQuotaBytes) {
          throw new LimitError(`uploads in progress would hold more than this host's quota of ${this.limits.uploadQuotaBytes} bytes`, 'retry when others have finished');
        }
        // statfs every 64 MiB, not on every chunk.
        if (Math.floor((mine + bytes) / 2 ** 26) !== Math.floor(mine / 2 ** 26) || mine === 0) {
          const st = await fs.promises.statfs(this.dir);
          if (st.bavail * st.bsize - bytes < this.limits.reserveBytes) {
            throw new LimitError(`the upload would leave less than ${this.limits.reserveBytes} bytes free on this host`);
          }
        }
        mine += bytes;
        this.used += bytes;
      },
      release: () => {
        this.used -= mine;
        mine = 0;
      },
    };
  }
}
