import type { Root } from '../lib/root';
import { ArchiveSigner, ArchiveTrust, keySigner } from '../checkpoint/archive-signature';
import { fingerprintOf, parseCertificate } from './certificate';
import { hostIdentity, readHostIdentity } from './identity';
import { TrustStore } from './trust';

/**
 * Checkpoint archives carry their exporting host's signature: this host
 * signs with its identity's key, and accepts what it signed itself or what a
 * host in its trust list (`tsvz trust list`) signed. The keys come from the
 * certificates the daemon pins, so trust for archives is trust for calls.
 */

/** This host as the signer of what it exports (its identity is made on first use). */
export async function hostSigner(root: Root): Promise<ArchiveSigner> {
  const id = await hostIdentity(root);
  return keySigner(id.name, id.fingerprint, id.privateKey);
}

/** Whose archives this host accepts; `acceptUnsigned` (--trust-unsigned) also lets through one without a signature. */
export function archiveTrust(root: Root, acceptUnsigned = false): ArchiveTrust {
  const signers = new Map<string, { name: string; publicKey: import('node:crypto').KeyObject }>();
  const own = readHostIdentity(root);
  if (own) signers.set(own.fingerprint, { name: `${own.name} (this host)`, publicKey: own.certificate.publicKey });
  for (const client of new TrustStore(root).trusted()) {
    const cert = parseCertificate(client.certificatePem, `the certificate of ${client.name}`);
    signers.set(fingerprintOf(cert), { name: client.name, publicKey: cert.publicKey });
  }
  return { signers, acceptUnsigned };
}
