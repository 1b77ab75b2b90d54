import fs = require('node:fs');
import path = require('node:path');
import { NotSupportedError } from '../../lib/errors';
import { withLock } from '../../lib/lock';
import { findCommand, run } from '../../lib/process';
import type { Root } from '../../lib/root';
import type { Template } from './index';

const SUITE = 'bookworm';
/** A first build takes about 40 s here; a slow mirror, minutes. */
const BUILD_WAIT_MS = 15 * 60_000;

/** The Debian mirror this host already uses (debootstrap reaches nothing else). */
export function hostDebianMirror(): string {
  const candidates = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const file of candidates) {
    let text: string;
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    const deb822 = /^URIs:\s*(\S+)/m.exec(text);
    if (deb822) return deb822[1];
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text);
    if (oneLine) return oneLine[1];
  }
  return 'http://deb.debian.org/debian';
}

/**
 * Debian minbase via debootstrap, built once per root and cached as a
 * directory; each container gets a copy (reflinked where the fs allows).
 * busybox is included so there is a small init that runs as pid 1.
 */
export class DebianTemplate implements Template {
  readonly name = 'debian';
  readonly defaults = { init: ['/sbin/init'], stopSignal: 'SIGTERM' };

  async populate(rootfs: string, ctx: { root: Root; hostname: string }): Promise<void> {
    const cached = await this.ensureCache(ctx.root);
    await run('cp', ['-a', '--reflink=auto', `${cached}/.`, rootfs], { dieWithParent: true });
    fs.writeFileSync(path.join(rootfs, 'etc/hostname'), `${ctx.hostname}\n`);
    // minbase has no init system: busybox's init, installed as /sbin/init.
    const init = path.join(rootfs, 'sbin/init');
    // lstat, not exists: a rootfs symlink must not be resolved against the host.
    if (!lstatOrUndefined(init)) fs.symlinkSync('/bin/busybox', init);
    fs.mkdirSync(path.join(rootfs, 'etc/init.d'), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'etc/inittab'), '::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/bash\n');
    fs.writeFileSync(path.join(rootfs, 'etc/init.d/rcS'), '#!/bin/sh\necho "tsvz: $(hostname) is up"\n', { mode: 0o755 });
  }

  private async ensureCache(root: Root): Promise<string> {
    const cached = path.join(root.cacheDir, `debian-${SUITE}`);
    const ready = () => fs.existsSync(path.join(cached, 'etc/debian_version'));
    if (ready()) return cached;
    if (!findCommand('debootstrap')) {
      throw new NotSupportedError('debootstrap is not installed', 'run scripts/setup-host');
    }
    // One build at a time: a second create waits for the first one's cache.
    fs.mkdirSync(root.cacheDir, { recursive: true });
    return withLock(`${cached}.lock`, 'the debian template cache', BUILD_WAIT_MS, async () => {
      if (ready()) return cached;
      await this.build(cached);
      return cached;
    });
  }

  private async build(cached: string): Promise<void> {
    // Left by a create killed mid-build (we hold the lock: nobody builds now).
    for (const e of fs.readdirSync(path.dirname(cached))) {
      if (e.startsWith(`${path.basename(cached)}.building-`)) fs.rmSync(path.join(path.dirname(cached), e), { recursive: true, force: true });
    }
    const building = `${cached}.building-${process.pid}`;
    try {
      await run('debootstrap', ['--variant=minbase', '--include=busybox', SUITE, building, hostDebianMirror()], { dieWithParent: true });
    } catch (err) {
      fs.rmSync(building, { recursive: true, force: true });
      throw err;
    }
    fs.renameSync(building, cached);
  }
}

function lstatOrUndefined(p: string): fs.Stats | undefined {
  try { return fs.lstatSync(p); } catch { return undefined; }
}
