import crypto = require('node:crypto');
import fs = require('node:fs');
import os = require('node:os');
import { writeFileAtomic } from '../lib/atomic-file';
import { SystemError } from '../lib/errors';
import type { Root } from '../lib/root';
import { fingerprintOf, makeSelfSignedCertificate, parseCertificate } from './certificate';
import { DaemonFiles } from './files';

/**
 * This host's identity: one Ed25519 key (ROOT/daemon/host.key, 0600) and its
 * self-signed certificate (host.crt). The daemon serves TLS with it, the CLI
 * and the daemon present it when they call another host, and other layers
 * sign with the key (hostIdentity(root).privateKey, through Node's crypto).
 * Made on first use, under the daemon-state lock so two first starts agree.
 */
export interface HostIdentity {
  /** The certificate's common name: the host's name as it gives it to peers. */
  name: string;
  privateKey: crypto.KeyObject;
  keyPem: string;
  certPem: string;
  certificate: crypto.X509Certificate;
  /** SHA-256 of the certificate (AB:CD:...): what peers pin. */
  fingerprint: string;
}

/** The host's identity, or undefined when it has none yet. */
export function readHostIdentity(root: Root): HostIdentity | undefined {
  const files = new DaemonFiles(root);
  let keyPem: string;
  let certPem: string;
  try {
    keyPem = fs.readFileSync(files.hostKey, 'utf8');
    certPem = fs.readFileSync(files.hostCert, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SystemError(`cannot read this host's identity in ${files.dir}`, err);
  }
  const certificate = parseCertificate(certPem, files.hostCert);
  const name = /(?:^|\n)CN=([^\n]*)/.exec(certificate.subject)?.[1] ?? '';
  return { name, privateKey: crypto.createPrivateKey(keyPem), keyPem, certPem, certificate, fingerprint: fingerprintOf(certificate) };
}

/** The host's identity, made now when it has none (`name`: its common name, default the hostname). */
export async function hostIdentity(root: Root, name = os.hostname()): Promise<HostIdentity> {
  const existing = readHostIdentity(root);
  if (existing) return existing;
  const files = new DaemonFiles(root);
  return files.locked(async () => {
    const again = readHostIdentity(root);
    if (again) return again;
    const { privateKey } = crypto.generateKeyPairSync('ed25519');
    const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const certPem = await makeSelfSignedCertificate(privateKey, name);
    files.ensure();
    // The key first: a certificate on disk always has its key.
    await writeFileAtomic(files.hostKey, keyPem, 0o600);
    await writeFileAtomic(files.hostCert, certPem, 0o600);
    return readHostIdentity(root)!;
  });
}
