import fs = require('node:fs');
import path = require('node:path');
import { NotSupportedError } from '../../lib/errors';
import { timeSlicer } from '../../lib/poll';
import { run } from '../../lib/process';
import type { Template } from './index';

/** Debian's busybox-static: one static binary, works offline. */
export const BUSYBOX_BINARY = '/bin/busybox';

// busybox init runs rcS once, then keeps a shell on the console (behind
// "press Enter", so nothing reads the console until someone attaches).
const INITTAB = `::sysinit:/etc/init.d/rcS
::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
`;

const RCS = `#!/bin/sh
# tsvz busybox template: bring the system up, then let init keep it up.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp 2>/dev/null
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run 2>/dev/null
echo "tsvz: $(hostname) is up"
`;

export class BusyboxTemplate implements Template {
  readonly name = 'busybox';
  // SIGTERM makes busybox init run its shutdown actions and end the container.
  readonly defaults = { init: ['/sbin/init'], stopSignal: 'SIGTERM' };

  async populate(rootfs: string, ctx: { hostname: string }): Promise<void> {
    if (!fs.existsSync(BUSYBOX_BINARY)) {
      throw new NotSupportedError(`${BUSYBOX_BINARY} is missing`, 'install busybox-static (scripts/setup-host does)');
    }
    for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/init.d', 'root', 'tmp', 'run', 'var/log', 'proc', 'sys', 'dev', 'home']) {
      fs.mkdirSync(path.join(rootfs, dir), { recursive: true, mode: 0o755 });
    }
    fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
    fs.chmodSync(path.join(rootfs, 'root'), 0o700);
    fs.copyFileSync(BUSYBOX_BINARY, path.join(rootfs, 'bin/busybox'));
    fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
    const applets = (await run(BUSYBOX_BINARY, ['--list-full'])).stdout.split('\n').filter(Boolean);
    // Hundreds of symlinks: a daemon's other calls get their turn in between.
    const slice = timeSlicer();
    for (const applet of applets) {
      await slice();
      const link = path.join(rootfs, applet);
      if (applet === 'bin/busybox' || fs.lstatSync(link, { throwIfNoEntry: false })) continue;
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync('/bin/busybox', link);
    }
    const files: [string, string, number][] = [
      ['etc/inittab', INITTAB, 0o644],
      ['etc/init.d/rcS', RCS, 0o755],
      ['etc/hostname', `${ctx.hostname}\n`, 0o644],
      ['etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${ctx.hostname}\n`, 0o644],
      ['etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', 0o644],
      ['etc/group', 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n', 0o644],
      ['etc/shadow', 'root:*:19000:0:99999:7:::\n', 0o600],
      ['etc/profile', 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1="\\h:\\w\\$ "\n', 0o644],
    ];
    for (const [rel, content, mode] of files) fs.writeFileSync(path.join(rootfs, rel), content, { mode });
  }
}
