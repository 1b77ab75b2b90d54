import crypto = require('node:crypto');
import net = require('node:net');
import tls = require('node:tls');
import { InvalidArgumentError, SystemError, TsvzError } from '../lib/errors';
import { serverTlsOptions, TLS_SERVER_NAME } from './credentials';
import type { HostIdentity } from './identity';
import type { Logger } from './log';
import { refusalFor, TrustedClient } from './trust';

/**
 * Bulk bytes beside gRPC: a migration's files and images go over a mutual
 * TLS connection of their own, raw, instead of as gRPC messages. Here a
 * 512 MiB stream crosses TLS at over 1 GiB/s but gRPC at a third of that,
 * and the protobuf framing costs the sender more CPU than the encryption
 * (docs/benchmarks.md). The gRPC call stays the control: it names a
 * ticket in its header, the sender opens a connection with that ticket,
 * and the call's answer reports the outcome. The certificates are the
 * daemon's (TLS 1.3, the client's checked against the trust store, the
 * server's pinned by the client), and a connection serves only the call of
 * the same client that named its ticket.
 *
 * Wire: the client sends `TICKET\n` (64 hex characters), then the body;
 * its end of the stream is the body's end.
 */

const TICKET = /^[0-9a-f]{64}$/;
const HELLO_BYTES = 65;

export function newTicket(): string {
  return crypto.randomBytes(32).toString('hex');
}

export function validateTicket(t: unknown): string {
  if (typeof t !== 'string' || !TICKET.test(t)) throw new InvalidArgumentError('invalid data channel ticket');
  return t;
}

interface Waiter {
  fingerprint: string;
  take(socket: tls.TLSSocket): void;
}

interface Arrival {
  socket: tls.TLSSocket;
  fingerprint: string;
  timer: NodeJS.Timeout;
}

export class DataChannel {
  private server?: tls.Server;
  private readonly waiting = new Map<string, Waiter>();
  /** Connections whose call has not named their ticket yet: the two race. */
  private readonly arrived = new Map<string, Arrival>();
  private readonly open = new Set<{ socket: tls.TLSSocket; fingerprint: string }>();
  /** Where it listens ("" until started). */
  address = '';
  port = 0;

  constructor(
    private readonly identity: HostIdentity,
    private readonly clients: () => readonly TrustedClient[],
    private readonly opts: { handshakeMs: number; maxConnections: number },
    private readonly log: Logger,
  ) {}

  listen(host: string, port: number, caPems: string[]): Promise<void> {
    const server = tls.createServer({
      ...serverTlsOptions(this.identity, caPems),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: this.opts.handshakeMs,
    }, (socket) => this.accept(socket));
    server.maxConnections = this.opts.maxConnections;
    server.on('tlsClientError', () => undefined); // an untrusted or broken handshake: the socket is gone
    this.server = server;
    return new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(new SystemError(`cannot listen for data on ${host}:${port}: ${err.code ?? err.message}`, err));
      server.once('error', failed);
      server.listen({ host, port }, () => {
        server.off('error', failed);
        const a = server.address() as net.AddressInfo;
        this.port = a.port;
        this.address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
        resolve();
      });
    });
  }

  /** The client certificates OpenSSL accepts (the trust store's). */
  setCertificateAuthorities(pems: string[]): void {
    this.server?.setSecureContext(serverTlsOptions(this.identity, pems));
  }

  /**
   * The connection client `fingerprint` opens with `ticket`, as a stream of
   * the body; rejects after `ms` without one, or when `signal` aborts.
   */
  expect(ticket: string, fingerprint: string, ms: number, signal: AbortSignal): Promise<tls.TLSSocket> {
    validateTicket(ticket);
    if (this.waiting.has(ticket)) return Promise.reject(new InvalidArgumentError('a data channel ticket is used once'));
    return new Promise<tls.TLSSocket>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiting.delete(ticket);
      };
      const timer = setTimeout(() => { done(); reject(new TsvzError('ETIMEDOUT', `no data connection came within ${ms} ms`)); }, ms);
      const onAbort = () => { done(); reject(new TsvzError('ECANCELLED', 'the call ended before its data connection came')); };
      signal.addEventListener('abort', onAbort, { once: true });
      const take = (socket: tls.TLSSocket) => {
        done();
        // The call's end ends its connection, however it ends.
        signal.addEventListener('abort', () => socket.destroy(), { once: true });
        resolve(socket);
      };
      this.waiting.set(ticket, { fingerprint, take });
      const early = this.arrived.get(ticket);
      if (early) {
        this.arrived.delete(ticket);
        clearTimeout(early.timer);
        this.match(ticket, early.socket, early.fingerprint);
      }
    });
  }

  /** Cut the connections of these (revoked) clients. */
  cut(fingerprints: Set<string>): void {
    for (const c of this.open) if (fingerprints.has(c.fingerprint)) c.socket.destroy();
  }

  close(): void {
    this.server?.close();
    for (const a of this.arrived.values()) { clearTimeout(a.timer); a.socket.destroy(); }
    this.arrived.clear();
    for (const c of this.open) c.socket.destroy();
  }

  private accept(socket: tls.TLSSocket): void {
    socket.on('error', () => undefined); // the reader of the body sees it as the stream's end or error
    const fingerprint = socket.getPeerCertificate()?.fingerprint256;
    const refused = refusalFor(this.clients(), fingerprint);
    if (refused || !fingerprint) {
      this.log.warn('data connection refused', { reason: refused?.message });
      return void socket.destroy();
    }
    const entry = { socket, fingerprint };
    this.open.add(entry);
    socket.on('close', () => this.open.delete(entry));
    const timer = setTimeout(() => socket.destroy(), this.opts.handshakeMs);
    let head = Buffer.alloc(0);
    const onData = (data: Buffer) => {
      head = Buffer.concat([head, data]);
      const nl = head.indexOf(0x0a);
      if (nl < 0) {
        if (head.length >= HELLO_BYTES) socket.destroy();
        return;
      }
      socket.off('data', onData);
      socket.pause();
      clearTimeout(timer);
      const ticket = head.subarray(0, nl).toString('latin1');
      const rest = head.subarray(nl + 1);
      if (rest.length > 0) socket.unshift(rest);
      if (!TICKET.test(ticket)) return void socket.destroy();
      if (this.waiting.has(ticket)) return this.match(ticket, socket, fingerprint);
      // Its call has not named the ticket yet: held as long as a handshake may take.
      if (this.arrived.has(ticket)) return void socket.destroy();
      this.arrived.set(ticket, { socket, fingerprint, timer: setTimeout(() => { this.arrived.delete(ticket); socket.destroy(); }, this.opts.handshakeMs) });
    };
    socket.on('data', onData);
  }

  private match(ticket: string, socket: tls.TLSSocket, fingerprint: string): void {
    const w = this.waiting.get(ticket)!;
    if (w.fingerprint !== fingerprint) {
      this.log.warn('data connection with another client\'s ticket', { fingerprint });
      return void socket.destroy();
    }
    w.take(socket);
  }
}

/**
 * The client's side: a connection to the data channel of the host whose
 * certificate is `pinned`, presenting this host's, with `ticket` sent
 * first; resolves once it may carry the body.
 */
export function connectData(identity: HostIdentity, host: string, port: number, pinned: { certificatePem: string; fingerprint: string }, ticket: string, timeoutMs: number): Promise<tls.TLSSocket> {
  validateTicket(ticket);
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const socket = tls.connect({
      host, port, servername: TLS_SERVER_NAME, ca: pinned.certificatePem, key: identity.keyPem, cert: identity.certPem, minVersion: 'TLSv1.3',
      checkServerIdentity: (_h, cert) => (cert.fingerprint256 === pinned.fingerprint ? undefined : new Error(`the host's certificate ${cert.fingerprint256} is not the pinned ${pinned.fingerprint}`)),
    });
    const timer = setTimeout(() => socket.destroy(new TsvzError('ETIMEDOUT', `no data connection to ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    socket.once('error', (err) => { clearTimeout(timer); reject(err instanceof TsvzError ? err : new TsvzError('EUNAVAILABLE', `data connection to ${host}:${port}: ${err.message}`)); });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      socket.write(`${ticket}\n`);
      resolve(socket);
    });
  });
}
