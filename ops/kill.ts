import { thawAll } from '../runtime/cgroups/freezer';
import { Container } from '../runtime/container';
import { InvalidArgumentError, InvalidStateError } from '../lib/errors';
import { SIGNALS } from '../lib/proc';
import { reconcile } from '../runtime/release';
import { signalInit } from './stop';
import { lockContainer } from './recovery';

/** Parse "SIGKILL", "KILL", "kill" or "9". */
export function parseSignal(text: string): number {
  const upper = text.toUpperCase();
  if (/^\d+$/.test(text) && Number(text) > 0 && Number(text) < 65) return Number(text);
  const n = SIGNALS[upper] ?? SIGNALS[`SIG${upper}`];
  if (n === undefined) throw new InvalidArgumentError(`unknown signal "${text}"`);
  return n;
}

/** Send a signal to the container's init (default SIGKILL). State catches up on the next command. */
export async function killContainer(c: Container, signal = 'SIGKILL'): Promise<void> {
  const sig = parseSignal(signal);
  await lockContainer(c, async () => {
    const current = await reconcile(c);
    if (current.status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
    signalInit(c, current, sig);
    if (sig === SIGNALS.SIGKILL) await thawAll(c.cgroups()); // the v1 freezer holds even SIGKILL pending
  });
}
