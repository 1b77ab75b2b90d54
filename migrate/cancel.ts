import { InvalidStateError, NotFoundError, TimeoutError } from '../lib/errors';
import { isSameProcess } from '../lib/proc';
import type { Root } from '../lib/root';
import { isSettled, MigrationJournal, MigrationRecord } from './journal';
import { resolveMigration } from './resolve';

/** How long `migrate cancel` waits for the migration to roll back (CRIU resuming a large tree included). */
const CANCEL_WAIT_MS = 120_000;

/**
 * `tsvz migrate cancel NAME`, on the source: until the switch-over, the
 * process driving the migration is told (SIGTERM, which it takes as a
 * cancel) and this waits until it has rolled back: the source runs on, the
 * target dropped its copy. A driver that is gone is settled as resolve does.
 */
export async function cancelMigration(root: Root, name: string, waitMs = CANCEL_WAIT_MS): Promise<string> {
  const journal = new MigrationJournal(root);
  const r = journal.inFlight(name, 'source');
  if (!r) {
    const incoming = journal.inFlight(name, 'target');
    if (incoming) throw new InvalidStateError(`${name} is migrating to this host from ${incoming.peer}`, `cancel it on ${incoming.peer}: \`tsvz migrate cancel ${name}\``);
    throw new NotFoundError(`no migration of ${name} in flight on this host`, 'see `tsvz migrate list`');
  }
  refusePastSwitch(r);
  if (!isSameProcess(r.driver?.pid, r.driver?.start)) return `${await resolveMigration(root, name)} (its driver was gone)`;
  // A signal would stop the whole daemon: its migrations are cancelled by their caller.
  if (r.driver!.daemon) throw new InvalidStateError(`the migration of ${name} to ${r.peer} is driven by this host's daemon for a remote client`, 'cancel it there: Ctrl-C on its `tsvz --remote` command');
  process.kill(r.driver!.pid, 'SIGTERM');
  const deadline = Date.now() + waitMs;
  for (;;) {
    const now = journal.get(r.id);
    if (now.phase === 'aborted') return `cancelled migration ${r.id.slice(0, 12)} of ${name} to ${r.peer}: ${name} runs on here`;
    if (isSettled(now)) throw new InvalidStateError(`migration ${r.id.slice(0, 12)} of ${name} to ${r.peer} was ${now.phase} before the cancel reached it`);
    refusePastSwitch(now);
    if (!isSameProcess(r.driver!.pid, r.driver!.start)) return `${await resolveMigration(root, name)} (its driver was gone)`;
    if (Date.now() > deadline) throw new TimeoutError(`migration of ${name} did not roll back within ${waitMs / 1000} s`, 'see `tsvz migrate list`; `tsvz migrate resolve` settles one whose driver died');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function refusePastSwitch(r: MigrationRecord): void {
  if (r.phase === 'switching') throw new InvalidStateError(`migration of ${r.name} to ${r.peer} is past the switch-over`, 'it finishes there; `tsvz migrate resolve` settles one that was cut off');
}
