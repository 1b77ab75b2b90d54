import crypto = require('node:crypto');
import { CorruptDataError } from '../lib/errors';

/**
 * X.509 for the daemon: making a self-signed certificate goes through
 * @peculiar/x509 (a kept library: ASN.1 is not written by hand here), reading
 * one through Node's own crypto.X509Certificate. The library is loaded only
 * when a certificate is made, once in a host's life (first start).
 */

/** Certificates live this long; a host's identity is replaced by hand (docs/daemon.md). */
const VALID_DAYS = 3650;

/**
 * A self-signed certificate for `key` (an Ed25519 private key), CN
 * `commonName`. It is its own CA (basicConstraints CA, keyCertSign), so a
 * peer can pin it as the one trust anchor of the TLS connection; it serves
 * as server and as client certificate.
 */
export async function makeSelfSignedCertificate(key: crypto.KeyObject, commonName: string): Promise<string> {
  require('@abraham/reflection'); // the Reflect metadata polyfill @peculiar/x509's tsyringe needs
  const x509 = require('@peculiar/x509') as typeof import('@peculiar/x509');
  const subtle = crypto.webcrypto.subtle;
  x509.cryptoProvider.set(crypto.webcrypto as unknown as Crypto);
  const alg = { name: 'Ed25519' };
  const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' });
  const keys = {
    privateKey: await subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']),
    publicKey: await subtle.importKey('spki', spki, alg, true, ['verify']),
  };
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    // A unique subject, and key identifiers: OpenSSL finds a certificate's
    // issuer by subject and key id, and two hosts may share a host name.
    name: [{ CN: [commonName] }, { O: ['tsvz'] }, { OU: [crypto.randomBytes(8).toString('hex')] }],
    notBefore: new Date(now - 5 * 60_000), // clocks of two hosts differ a little
    notAfter: new Date(now + VALID_DAYS * 86_400_000),
    signingAlgorithm: alg,
    keys: keys as CryptoKeyPair,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return cert.toString('pem') + '\n';
}

/** Node's view of a PEM certificate; ECORRUPT when it is not one. */
export function parseCertificate(pem: string, what = 'certificate'): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(pem);
  } catch (err) {
    throw new CorruptDataError(`${what} is not a PEM certificate: ${(err as Error).message}`);
  }
}

/** SHA-256 of the certificate's DER, as Node's fingerprint256 prints it (AB:CD:...). */
export function fingerprintOf(cert: crypto.X509Certificate): string {
  return cert.fingerprint256;
}

/** A fingerprint as its 32 bytes. */
export function fingerprintBytes(fingerprint: string): Buffer {
  return Buffer.from(fingerprint.replace(/:/g, ''), 'hex');
}

/** 32 bytes as a fingerprint (AB:CD:...). */
export function formatFingerprint(bytes: Buffer): string {
  return bytes.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}
