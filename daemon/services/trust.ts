import crypto = require('node:crypto');
import { InvalidArgumentError, TsvzError } from '../../lib/errors';
import { validateName } from '../../lib/names';
import { parseCertificate } from '../certificate';
import { DaemonFiles } from '../files';
import { enrolmentProofData } from '../enrol-proof';
import { Trust } from '../proto';
import { DaemonContext, Handler, unary } from '../server';
import { TokenStore } from '../tokens';
import { TrustStore } from '../trust';

const MAX_CERTIFICATE_PEM = 16 * 1024;

/**
 * tsvz.v1.Trust: Enrol, the one call a client not yet trusted may make. It
 * spends a token and trusts the certificate the client proves it holds the
 * key of; the token, the name and the certificate are checked first, and
 * the token is spent and the client added in one critical section.
 */
export function trustService(d: DaemonContext): Handler[] {
  const files = new DaemonFiles(d.root);
  const tokens = new TokenStore(d.root);
  const trust = new TrustStore(d.root);
  return [
    unary(Trust.Enrol, async (req, ctx) => {
      const name = validateName(req.clientName ?? '', 'client');
      const pem = req.certificatePem ?? '';
      if (pem.length > MAX_CERTIFICATE_PEM) throw new InvalidArgumentError('the client certificate is too long');
      const cert = parseCertificate(pem, 'the client certificate');
      if (cert.publicKey.asymmetricKeyType !== 'ed25519') throw new InvalidArgumentError('the client certificate must hold an Ed25519 key');
      const secret = req.tokenSecret ?? Buffer.alloc(0);
      if (secret.length !== 32) throw new TsvzError('EUNAUTHENTICATED', 'unknown enrolment token');
      const proof = req.proof ?? Buffer.alloc(0);
      if (!crypto.verify(null, enrolmentProofData(d.identity.fingerprint, secret), cert.publicKey, proof)) {
        throw new TsvzError('EUNAUTHENTICATED', 'the enrolment is not signed by the key of the certificate it carries');
      }
      const spent = await files.locked(async () => {
        trust.checkAddable(name, cert);
        const record = await tokens.spendLocked(secret, name);
        await trust.addLocked(name, pem);
        return record;
      });
      d.reloadTrust();
      d.log.info('enrolled', { client: name, fingerprint: cert.fingerprint256, token: spent.id, peer: ctx.peer });
      return { hostName: d.identity.name };
    }, { anonymous: true }),
  ];
}
