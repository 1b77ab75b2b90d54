import type * as grpc from '@grpc/grpc-js';
import tls = require('node:tls');
import type { HostIdentity } from './identity';

/**
 * TLS for the daemon, TLS 1.3 only, one certificate each side, pinned.
 *
 * Server: every client must present a certificate (requestCert). The
 * handshake itself accepts any (rejectUnauthorized false) so that an unknown
 * client still reaches Trust.Enrol and a revoked one is told so; OpenSSL
 * verifies each against the certificates the trust store holds (its `ca`,
 * updated when the store changes), and only then does grpc-js put it in
 * call.getAuthContext(). The daemon authorises every call by that
 * certificate's fingerprint against the trust store, never by address.
 *
 * Client: the server's pinned certificate is the only CA, and its
 * fingerprint is checked again on every connection (checkServerIdentity);
 * host names play no part.
 */
export function serverCredentials(grpcModule: typeof grpc, identity: HostIdentity, caPems: string[], handshakeMs: number): PinnedServerCredentials {
  class Pinned extends grpcModule.ServerCredentials implements PinnedServerCredentials {
    constructor() {
      super({ requestCert: true, rejectUnauthorized: false, handshakeTimeout: handshakeMs }, serverTlsOptions(identity, caPems));
    }
    setCertificateAuthorities(pems: string[]): void {
      this.updateSecureContextOptions(serverTlsOptions(identity, pems));
    }
    _equals(other: grpc.ServerCredentials): boolean {
      return other === this;
    }
  }
  return new Pinned();
}

export interface PinnedServerCredentials extends grpc.ServerCredentials {
  /** The client certificates OpenSSL verifies against (the trust store's). */
  setCertificateAuthorities(pems: string[]): void;
}

/** The server's TLS: its identity, TLS 1.3, the clients' certificates as the only CAs (the data channel's too). */
export function serverTlsOptions(identity: HostIdentity, caPems: string[]): tls.SecureContextOptions {
  // Never an empty CA list: Node would fall back to the public roots.
  return { key: identity.keyPem, cert: identity.certPem, ca: [identity.certPem, ...caPems], minVersion: 'TLSv1.3' };
}

/** Name the client asks for in SNI and checks nothing against: pinning replaces host names. */
export const TLS_SERVER_NAME = 'tsvz';

export function clientCredentials(grpcModule: typeof grpc, identity: HostIdentity, serverCertPem: string, fingerprint: string): grpc.ChannelCredentials {
  const context = tls.createSecureContext({ ca: serverCertPem, key: identity.keyPem, cert: identity.certPem, minVersion: 'TLSv1.3' });
  return grpcModule.credentials.createFromSecureContext(context, {
    checkServerIdentity: (_host, cert) =>
      cert.fingerprint256 === fingerprint ? undefined : new Error(`the host's certificate ${cert.fingerprint256} is not the pinned ${fingerprint}`),
  });
}
