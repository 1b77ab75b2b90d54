import { FreezerKind, freeze, freezerFor, isFrozen, thawAll } from '../runtime/cgroups/freezer';
import { Container } from '../runtime/container';
import { InvalidStateError } from '../lib/errors';
import { reconcile } from '../runtime/release';
import { lockContainer } from './recovery';

/** Freeze every process of a running container; returns how long the kernel took. */
export async function freezeContainer(c: Container, opts: { prefer?: FreezerKind } = {}): Promise<{ ms: number }> {
  return lockContainer(c, async () => {
    const cg = await runningCgroups(c);
    if (isFrozen(cg)) throw new InvalidStateError(`container ${c.name} is already frozen`, `thaw it with \`tsvz unfreeze ${c.name}\``);
    return { ms: await freeze(freezerFor(cg, opts.prefer)) };
  });
}

/** Thaw a frozen container (both freezers on a hybrid host). */
export async function unfreezeContainer(c: Container): Promise<void> {
  await lockContainer(c, async () => {
    const cg = await runningCgroups(c);
    if (!isFrozen(cg)) throw new InvalidStateError(`container ${c.name} is not frozen`);
    await thawAll(cg);
  });
}

async function runningCgroups(c: Container) {
  if ((await reconcile(c)).status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
  return c.cgroups();
}
