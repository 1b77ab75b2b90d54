import { InvalidArgumentError } from '../../lib/errors';
import type { Root } from '../../lib/root';

/** What a template contributes besides files: how to boot and stop it. */
export interface TemplateDefaults {
  init: string[];
  stopSignal: string;
}

export interface Template {
  readonly name: string;
  readonly defaults: TemplateDefaults;
  /** Fill the empty directory `rootfs` with a root filesystem. */
  populate(rootfs: string, ctx: { root: Root; hostname: string }): Promise<void>;
}

/**
 * Resolve a --template value: "busybox", "debian" or "tar:FILE". Loads only
 * the template's own module (debootstrap and tar-stream stay off the fast path).
 */
export async function resolveTemplate(spec: string): Promise<Template> {
  if (spec === 'busybox') return new (await import('./busybox')).BusyboxTemplate();
  if (spec === 'debian') return new (await import('./debian')).DebianTemplate();
  if (spec.startsWith('tar:') && spec.length > 4) return new (await import('./tarball')).TarballTemplate(spec.slice(4));
  throw new InvalidArgumentError(`unknown template "${spec}"`, 'use busybox, debian or tar:FILE');
}
