import crypto = require('node:crypto');
import tls = require('node:tls');
import { AlreadyExistsError, TsvzError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import { RemoteClient } from './client';
import { TLS_SERVER_NAME } from './credentials';
import { enrolmentProofData } from './enrol-proof';
import { hostIdentity, HostIdentity } from './identity';
import { Trust } from './proto';
import { parseAddress, Remote, RemoteStore } from './remotes';
import { parseToken } from './tokens';

/**
 * `tsvz remote add NAME ADDRESS --token T`: read the host's certificate from
 * a first TLS handshake, check its fingerprint against the one the token
 * carries (a token for another host is refused here, before its secret is
 * sent), then enrol over a connection pinned to that certificate and save
 * the remote. `as`: the name the host will know this one by.
 */
export async function addRemote(root: Root, name: string, address: string, tokenText: string, as?: string): Promise<Remote> {
  validateName(name, 'remote');
  const [host, port] = parseAddress(address, 7443);
  const store = new RemoteStore(root);
  if (store.list().some((r) => r.name === name)) throw new AlreadyExistsError(`remote ${name} already exists`, `remove it first with \`tsvz remote rm ${name}\``);
  const token = parseToken(tokenText.trim());
  const identity = await hostIdentity(root);
  const clientName = validateName(as ?? identity.name, 'client');
  const cert = await peerCertificate(name, host, port, identity);
  if (cert.fingerprint256 !== token.fingerprint) {
    throw new TsvzError('EPERM', `${name}: the host at ${address} is not the one this token is for (its certificate is ${cert.fingerprint256}, the token names ${token.fingerprint})`, {
      hint: 'check the address, or ask that host for its own token',
    });
  }
  const peer = { name, address: `${host.includes(':') ? `[${host}]` : host}:${port}`, fingerprint: cert.fingerprint256, certificatePem: cert.toString() };
  const client = new RemoteClient(require('@grpc/grpc-js') as typeof import('@grpc/grpc-js'), peer, identity);
  try {
    const res = await client.unary(Trust.Enrol, {
      tokenSecret: token.secret,
      clientName,
      certificatePem: identity.certPem,
      proof: crypto.sign(null, enrolmentProofData(cert.fingerprint256, token.secret), identity.privateKey),
    }, { timeoutMs: 30_000 });
    const remote: Remote = { ...peer, hostName: res.hostName ?? '', addedAt: new Date().toISOString() };
    await store.add(remote);
    return remote;
  } finally {
    client.close();
  }
}

/** The certificate the host at host:port presents (nothing is trusted yet: the caller checks it). */
function peerCertificate(name: string, host: string, port: number, identity: HostIdentity): Promise<crypto.X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host, port, servername: TLS_SERVER_NAME, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3',
      key: identity.keyPem, cert: identity.certPem, rejectUnauthorized: false, timeout: 10_000,
    });
    const fail = (why: string) => {
      socket.destroy();
      reject(new TsvzError('EUNAVAILABLE', `${name}: cannot reach the daemon at ${host}:${port}: ${why}`, { hint: 'is `tsvz daemon` running there, and the address right?' }));
    };
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate(true).raw;
      socket.end();
      if (!raw) return fail('it presented no certificate');
      resolve(new crypto.X509Certificate(raw));
    });
    socket.once('timeout', () => fail('timed out'));
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
  });
}
