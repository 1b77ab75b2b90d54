import type { Root } from '../lib/root';
import type { MigrationMode } from './journal';
import type { TransferProgress } from './progress';
import type { CheckResult, MigrationResult } from './source';

export interface DriveOptions {
  mode: MigrationMode | 'auto';
  pool?: string;
  keepSource?: boolean;
  signal?: AbortSignal;
  onPhase?: (phase: string) => void;
  onProgress?: (p: TransferProgress) => void;
  /** The host's daemon drives it for a remote client (`migrate cancel` here then points there). */
  byDaemon?: boolean;
  onJournaled?: (id: string) => void;
}

/**
 * A migration of `name` from this root to its remote `to`, as the CLI
 * drives it here and the daemon for `tsvz --remote HOST migrate`: the
 * remote's daemon as the target, this host's key as the archive's signer.
 */
export async function driveMigration(root: Root, name: string, to: string, opts: DriveOptions): Promise<MigrationResult> {
  return withTarget(root, to, async (link, signer) => {
    const { migrateContainer } = await import('./source');
    return migrateContainer(root, name, link, { ...opts, signer: await signer() });
  });
}

/** `tsvz migrate --check`, the same way. */
export async function driveCheck(root: Root, name: string, to: string, opts: { mode: MigrationMode | 'auto'; pool?: string }): Promise<CheckResult> {
  return withTarget(root, to, async (link) => {
    const { checkMigration } = await import('./source');
    return checkMigration(root, name, link, opts);
  });
}

async function withTarget<T>(root: Root, to: string, body: (link: import('./source').TargetLink, signer: () => Promise<import('../checkpoint/archive-signature').ArchiveSigner>) => Promise<T>): Promise<T> {
  const { RemoteClient } = await import('../daemon/client');
  const { hostSigner } = await import('../daemon/signers');
  const { grpcTargetLink } = await import('./link');
  const client = await RemoteClient.connect(root, to);
  try {
    return await body(grpcTargetLink(client), () => hostSigner(root));
  } finally {
    client.close();
  }
}
