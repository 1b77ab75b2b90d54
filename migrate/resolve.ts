import { InvalidArgumentError, NotFoundError, TsvzError } from '../lib/errors';
import type { Root } from '../lib/root';
import { Container } from '../runtime/container';
import { reconcile } from '../runtime/release';
import { lockContainer } from '../ops/recovery';
import type { RemoteClient } from '../daemon/client';
import { Migration } from '../daemon/proto';
import { RemoteStore } from '../daemon/remotes';
import { archiveTrust } from '../daemon/signers';
import { isSettled, MigrationJournal, MigrationRecord } from './journal';
import { MigrationTarget } from './target';
import { releaseMigrationSnapshots } from './files';
import { releasePreCopyImages } from './pre-copy';

/**
 * The source's word on an unsettled migration of its own: it switched over
 * only if its container no longer runs (CRIU killed the tree after the
 * target restored). Settles the journal on that and says which.
 */
export async function settleSource(root: Root, r: MigrationRecord): Promise<'committed' | 'aborted'> {
  if (r.phase === 'committed' || r.phase === 'aborted') return r.phase;
  const journal = new MigrationJournal(root);
  const c = new Container(root, r.name);
  // Under the container's lock: a migration still running here holds it, and a killed one's dump is settled first.
  const running = c.exists() && await lockContainer(c, async () => (await reconcile(c)).status === 'running');
  // Before `switching` CRIU resumes the tree when its client goes; at `switching` only a running source says it did.
  const phase = r.phase === 'switching' && !running ? 'committed' : 'aborted';
  await journal.advance(r, phase, phase === 'aborted' ? 'settled by resolve: the source runs on' : undefined);
  // The snapshots of a native file transfer, left by a driver that was killed.
  if (c.exists()) {
    await releaseMigrationSnapshots(Container.open(root, r.name), r.id);
    releasePreCopyImages(c, r.id);
  }
  return phase;
}

/**
 * `tsvz migrate resolve NAME`: settle a migration cut off midway. On the
 * source, from its own state, then the target is told (when reachable). On
 * the target, a restored copy waits frozen for the source's word: asked of
 * the source's daemon (a remote with the source's fingerprint), or given by
 * the operator (`decision`) when the source is gone for good.
 */
export async function resolveMigration(root: Root, name: string, decision?: 'commit' | 'abort'): Promise<string> {
  const journal = new MigrationJournal(root);
  const r = journal.list().find((x) => x.name === name && !isSettled(x));
  if (!r) throw new NotFoundError(`no unsettled migration of ${name} on this host`, 'see `tsvz migrate list`');
  if (r.role === 'source') {
    if (decision) throw new InvalidArgumentError('--commit and --abort are for the target: the source knows its own outcome');
    const phase = await settleSource(root, r);
    const told = await onPeer(root, r, (client) => client.unary(phase === 'committed' ? Migration.Commit : Migration.Abort, { id: r.id }, { timeoutMs: 30_000 }))
      .then(() => `; ${r.peer} told`, (err: Error) => `; ${r.peer} not told (${err.message}): resolve there too`);
    if (phase === 'committed' && new Container(root, name).exists()) {
      const { destroyContainer } = await import('../ops/destroy');
      await destroyContainer(root, name, true);
    }
    return `migration ${r.id.slice(0, 12)} of ${name} to ${r.peer}: ${phase}${told}`;
  }
  const target = new MigrationTarget(root, () => archiveTrust(root));
  if (r.phase !== 'restored') {
    await target.abort(r.id, 'settled by resolve before the restore');
    return `migration ${r.id.slice(0, 12)} of ${name} from ${r.peer}: aborted (it had not restored)`;
  }
  let verdict = decision;
  if (!verdict) {
    const theirs = await onPeer(root, r, (client) => client.unary(Migration.Status, { id: r.id }, { timeoutMs: 30_000 })).catch((err: Error) => {
      throw new TsvzError('EUNAVAILABLE', `cannot ask ${r.peer} how migration ${r.id.slice(0, 12)} ended: ${err.message}`, {
        hint: `when ${r.peer} is gone for good: --commit if its copy is not running, --abort if it is`,
      });
    });
    if (theirs.phase === 'committed') verdict = 'commit';
    else if (theirs.phase === 'aborted' || theirs.phase === 'unknown') verdict = 'abort';
    else throw new TsvzError('ESTATE', `${r.peer} has migration ${r.id.slice(0, 12)} ${theirs.phase ?? 'in an unknown phase'}`, { hint: `run \`tsvz migrate resolve ${name}\` on ${r.peer} first (or wait: it may still be running)` });
  }
  const done = verdict === 'commit' ? await target.commit(r.id) : await target.abort(r.id, 'settled by resolve');
  return `migration ${r.id.slice(0, 12)} of ${name} from ${r.peer}: ${done.phase}`;
}

/** Run `body` on the daemon of the migration's peer: the remote of that name, or the one with its fingerprint. */
async function onPeer<T>(root: Root, r: MigrationRecord, body: (client: RemoteClient) => Promise<T>): Promise<T> {
  const store = new RemoteStore(root);
  const remote = store.list().find((x) => (r.peerFingerprint ? x.fingerprint === r.peerFingerprint : x.name === r.peer));
  if (!remote) throw new NotFoundError(`no remote for ${r.peer} on this host`);
  const { RemoteClient: Client } = await import('../daemon/client');
  const client = await Client.connect(root, remote.name);
  try {
    return await body(client);
  } finally {
    client.close();
  }
}
