import crypto = require('node:crypto');
import { CorruptDataError, TsvzError } from '../lib/errors';

/**
 * Who made a checkpoint archive. The manifest lists the size and sha256 of
 * every other entry; its signature (the entry manifest.sig, right after it)
 * is the exporting host's Ed25519 signature over the manifest's exact bytes,
 * so it covers the whole archive. An importer accepts an archive only from a
 * signer it trusts (this host, or a host in its trust list), unless told to
 * accept an unsigned one, and checks the signature before it reads any other
 * entry: a forged manifest, re-hashed after an edit, fails here.
 */

export const SIGNATURE_ENTRY = 'manifest.sig';
const FORMAT = 'tsvz-signature';
export const MAX_SIGNATURE_BYTES = 4096;

/** What signs: this host's key, named by its certificate's fingerprint (what peers pin). */
export interface ArchiveSigner {
  name: string;
  fingerprint: string;
  sign(data: Buffer): Buffer;
}

/** Whose archives an import accepts. */
export interface ArchiveTrust {
  /** Certificate fingerprint -> the signer's name and public key. */
  signers: ReadonlyMap<string, { name: string; publicKey: crypto.KeyObject }>;
  /** Accept an archive that carries no signature (the caller warns). */
  acceptUnsigned?: boolean;
}

interface SignatureFile {
  format: typeof FORMAT;
  version: 1;
  algorithm: 'ed25519';
  signer: string;
  signerName: string;
  signature: string;
}

/** A signer with an Ed25519 private key (Node's crypto). */
export function keySigner(name: string, fingerprint: string, privateKey: crypto.KeyObject): ArchiveSigner {
  return { name, fingerprint, sign: (data) => crypto.sign(null, data, privateKey) };
}

/** The signature entry for `manifest` (its bytes as they go into the archive). */
export function signatureFor(manifest: Buffer, signer: ArchiveSigner): Buffer {
  const file: SignatureFile = {
    format: FORMAT, version: 1, algorithm: 'ed25519', signer: signer.fingerprint, signerName: signer.name, signature: signer.sign(manifest).toString('base64'),
  };
  return Buffer.from(JSON.stringify(file, null, 2) + '\n');
}

/**
 * Check the signature entry `data` over `manifest`: returns the trusted
 * signer's name. A stranger's archive is EUNTRUSTED, a signature that does
 * not match its manifest ECORRUPT.
 */
export function verifySignature(subject: string, manifest: Buffer, data: Buffer, trust: ArchiveTrust): string {
  let file: Partial<SignatureFile>;
  try { file = JSON.parse(data.toString('utf8')) as Partial<SignatureFile>; } catch { throw new CorruptDataError(`${subject} has an unreadable ${SIGNATURE_ENTRY}`); }
  if (file.format !== FORMAT || file.version !== 1 || file.algorithm !== 'ed25519' || typeof file.signer !== 'string' || typeof file.signature !== 'string') {
    throw new CorruptDataError(`${subject} has an invalid ${SIGNATURE_ENTRY}`);
  }
  const signer = trust.signers.get(file.signer);
  if (!signer) {
    const claimed = typeof file.signerName === 'string' ? ` ("${file.signerName.replace(/[^\w.-]/g, '?').slice(0, 64)}")` : '';
    throw new TsvzError('EUNTRUSTED', `${subject} is signed by a host this one does not trust${claimed}, certificate ${file.signer.slice(0, 95)}`, {
      hint: 'enrol that host (`tsvz trust token` here, `tsvz remote add` there), or import with --trust-unsigned',
    });
  }
  const signature = Buffer.from(file.signature, 'base64');
  if (!crypto.verify(null, manifest, signer.publicKey, signature)) {
    throw new CorruptDataError(`${subject} is tampered: its manifest does not match its signature by ${signer.name}`);
  }
  return signer.name;
}

/** The refusal of an archive without a signature. */
export function unsigned(subject: string): TsvzError {
  return new TsvzError('EUNTRUSTED', `${subject} is not signed`, { hint: 'export it with this tsvz, or import it with --trust-unsigned if you trust where it came from' });
}
