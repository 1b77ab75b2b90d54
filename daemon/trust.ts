import type crypto = require('node:crypto');
import { AlreadyExistsError, LimitError, NotFoundError, TsvzError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import { fingerprintOf, parseCertificate } from './certificate';
import { DaemonFiles } from './files';

/**
 * Who may call this host (ROOT/daemon/trust.json): each client's certificate,
 * pinned by its SHA-256 fingerprint, under the name it enrolled with. A
 * revoked client stays listed as revoked, so its calls are told so and logged
 * by name; enrolling again with a new token trusts it again.
 */
export interface TrustedClient {
  name: string;
  fingerprint: string;
  certificatePem: string;
  addedAt: string;
  /** Set when revoked (`tsvz trust rm`). */
  revokedAt?: string;
}

interface TrustFile {
  version: 1;
  clients: TrustedClient[];
}

/** More than any fleet of peers; bounds what enrolments can make this host keep. */
export const MAX_CLIENTS = 1000;

export class TrustStore {
  private readonly files: DaemonFiles;

  constructor(root: Root) {
    this.files = new DaemonFiles(root);
  }

  get file(): string {
    return this.files.trust;
  }

  /** Every client, revoked ones too. */
  all(): TrustedClient[] {
    return this.files.read<TrustFile>(this.files.trust, { version: 1, clients: [] }).clients;
  }

  trusted(): TrustedClient[] {
    return this.all().filter((c) => !c.revokedAt);
  }

  /**
   * Trust `certificatePem` as `name` (under the state lock, which the caller
   * holds when it also spends a token). The same certificate enrolling again
   * is trusted again under the new name; another certificate under a taken
   * name is refused.
   */
  async addLocked(name: string, certificatePem: string): Promise<TrustedClient> {
    const cert = parseCertificate(certificatePem, 'the client certificate');
    const kept = this.checkAddable(name, cert);
    const fingerprint = fingerprintOf(cert);
    const entry: TrustedClient = { name, fingerprint, certificatePem: cert.toString(), addedAt: new Date().toISOString() };
    await this.files.write(this.files.trust, { version: 1, clients: [...kept, entry] } satisfies TrustFile);
    return entry;
  }

  /** Throws when `cert` cannot be trusted as `name`; else the entries that stay beside it. */
  checkAddable(name: string, cert: crypto.X509Certificate): TrustedClient[] {
    validateName(name, 'client');
    const fingerprint = fingerprintOf(cert);
    const clients = this.all();
    const taken = clients.find((c) => c.name === name && c.fingerprint !== fingerprint && !c.revokedAt);
    if (taken) throw new AlreadyExistsError(`a client named ${name} is already trusted`, `remove it first (\`tsvz trust rm ${name}\`) or enrol under another name`);
    const kept = clients.filter((c) => c.fingerprint !== fingerprint && !(c.name === name && c.revokedAt));
    if (kept.length >= MAX_CLIENTS) throw new LimitError(`this host already trusts ${MAX_CLIENTS} clients`, 'remove some with `tsvz trust rm`');
    return kept;
  }

  /** Revoke client `name` (or a fingerprint): its calls are refused from now on. */
  async revoke(nameOrFingerprint: string): Promise<TrustedClient> {
    return this.files.locked(async () => {
      const clients = this.all();
      const entry = clients.find((c) => !c.revokedAt && (c.name === nameOrFingerprint || c.fingerprint === nameOrFingerprint.toUpperCase()));
      if (!entry) throw new NotFoundError(`no trusted client ${nameOrFingerprint}`, 'see `tsvz trust list`');
      entry.revokedAt = new Date().toISOString();
      await this.files.write(this.files.trust, { version: 1, clients } satisfies TrustFile);
      return entry;
    });
  }
}

/** Why a certificate may not call: undefined when it may. */
export function refusalFor(clients: readonly TrustedClient[], fingerprint: string | undefined): TsvzError | undefined {
  // No certificate, or one OpenSSL could not verify against the trust store (an unknown one): alike.
  const entry = fingerprint === undefined ? undefined : clients.find((c) => c.fingerprint === fingerprint);
  if (!entry) return new TsvzError('EUNAUTHENTICATED', 'client certificate is not trusted by this host', { hint: 'enrol with `tsvz remote add HOST ADDRESS --token T`' });
  if (entry.revokedAt) return new TsvzError('EPERM', `client ${entry.name} was revoked at ${entry.revokedAt}`, { hint: 'ask for a new token' });
  return undefined;
}
