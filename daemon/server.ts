import type * as grpc from '@grpc/grpc-js';
import fs = require('node:fs');
import http = require('node:http');
import net = require('node:net');
import { BusyError, InvalidArgumentError, SystemError, TsvzError } from '../lib/errors';
import { withLock } from '../lib/lock';
import type { Root } from '../lib/root';
import { PinnedServerCredentials, serverCredentials } from './credentials';
import { DaemonFiles } from './files';
import { withWideReceiveWindows } from './receive-window';
import { DataChannel } from './data-channel';
import { HostIdentity, hostIdentity } from './identity';
import { DaemonLimits, DEFAULT_LIMITS, KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, MAX_MESSAGE } from './limits';
import { Level, Logger } from './log';
import { Metrics } from './metrics';
import { BadMessage, Method } from './proto';
import { parseAddress } from './remotes';
import { refusalFor, TrustedClient, TrustStore } from './trust';
import { grpcCodeOf, statusName, toWireError } from './wire-errors';
import { pollUntil } from '../lib/poll';

/**
 * The host daemon: one gRPC server over mutual TLS (credentials.ts) on one
 * address, serving the services it is given. Every call passes one gate
 * before its handler runs: the daemon is not shutting down, the request
 * decodes, and (except Trust.Enrol) the caller's certificate is trusted.
 * Every call is counted, timed and logged, and its errors leave through
 * lib/errors.ts's table. Services come from the layer that starts the
 * daemon (the CLI): migration and backups add theirs without changing this.
 *
 * The daemon owns its TCP listener and hands each connection to grpc-js
 * (a connection injector), so it can cut the connections of a client it
 * revokes; calls in flight for that client end with PERMISSION_DENIED first.
 */

export interface DaemonOptions {
  /** host:port to serve on (port 0: any). */
  listen: string;
  /** host:port of the Prometheus endpoint, a loopback address. */
  metrics?: string;
  /** host:port of the data channel (daemon/data-channel.ts); default: the listen host, any free port, told to peers in each call that uses it. */
  dataListen?: string;
  limits?: Partial<DaemonLimits>;
  logLevel?: Level;
}

/** What a service's handlers see of the daemon. */
export interface DaemonContext {
  root: Root;
  identity: HostIdentity;
  limits: DaemonLimits;
  log: Logger;
  metrics: Metrics;
  /** Bulk bytes beside the calls: a migration's files and images. */
  data: DataChannel;
  /** False once SIGTERM started the drain. */
  serving(): boolean;
  /** Re-read the trust store now (after an enrolment changed it). */
  reloadTrust(): void;
}

/** What a handler knows of its call. */
export interface CallContext {
  method: string;
  /** The trusted client (undefined only for anonymous methods). */
  client?: TrustedClient;
  peer: string;
  /** Aborted when the caller cancels, the client is revoked or the daemon stops. */
  signal: AbortSignal;
}

type Unary<Req, Res> = { kind: 'unary'; method: Method<Req, Res>; anonymous?: boolean; run(req: Req, ctx: CallContext): Promise<Res> };
type ServerStream<Req, Res> = {
  kind: 'serverStream'; method: Method<Req, Res>;
  /** Runs until the caller leaves (logs -f): cancelled at once on shutdown instead of waited for. */
  follows?: boolean;
  run(req: Req, out: grpc.ServerWritableStream<Req, Res>, ctx: CallContext): Promise<void>;
};
type ClientStream<Req, Res> = { kind: 'clientStream'; method: Method<Req, Res>; run(input: AsyncIterable<Req>, ctx: CallContext): Promise<Res> };
type BidiStream<Req, Res> = { kind: 'bidi'; method: Method<Req, Res>; run(input: AsyncIterable<Req>, out: grpc.ServerDuplexStream<Req, Res>, ctx: CallContext): Promise<void> };
export type Handler = Unary<any, any> | ServerStream<any, any> | ClientStream<any, any> | BidiStream<any, any>;

export function unary<Req, Res>(method: Method<Req, Res>, run: (req: Req, ctx: CallContext) => Promise<Res>, opts: { anonymous?: boolean } = {}): Handler {
  return { kind: 'unary', method, run, anonymous: opts.anonymous };
}
export function serverStream<Req, Res>(method: Method<Req, Res>, run: ServerStream<Req, Res>['run'], opts: { follows?: boolean } = {}): Handler {
  return { kind: 'serverStream', method, run, follows: opts.follows };
}
export function clientStream<Req, Res>(method: Method<Req, Res>, run: ClientStream<Req, Res>['run']): Handler {
  return { kind: 'clientStream', method, run };
}
export function bidiStream<Req, Res>(method: Method<Req, Res>, run: BidiStream<Req, Res>['run']): Handler {
  return { kind: 'bidi', method, run };
}

/** A service: its handlers, made once the daemon's context exists. */
export type ServiceFactory = (d: DaemonContext) => Handler[];

/** What every kind of server call offers. */
interface SurfaceCall {
  cancelled: boolean;
  getPeer(): string;
  getAuthContext(): ReturnType<grpc.ServerUnaryCall<unknown, unknown>['getAuthContext']>;
  on(event: 'cancelled', listener: () => void): unknown;
}

interface ActiveCall {
  method: string;
  fingerprint?: string;
  follows: boolean;
  abort: AbortController;
  /** End the call now with `err` (what the handler returns later is dropped). */
  fail(err: unknown): void;
  done: Promise<void>;
}

interface Connection {
  socket: net.Socket;
  fingerprint?: string;
}

export class Daemon implements DaemonContext {
  readonly log: Logger;
  readonly metrics = new Metrics();
  readonly limits: DaemonLimits;
  private readonly files: DaemonFiles;
  private readonly trust: TrustStore;
  private clients: TrustedClient[] = [];
  private trustStamp = '';
  private state: 'serving' | 'draining' | 'stopped' = 'serving';
  private readonly calls = new Set<ActiveCall>();
  private readonly connections = new Map<string, Connection>();
  private grpcServer?: grpc.Server;
  private injector?: grpc.ConnectionInjector;
  private listener?: net.Server;
  private metricsServer?: http.Server;
  private credentials?: PinnedServerCredentials;
  data!: DataChannel;
  private watcher?: fs.FSWatcher;
  private poller?: NodeJS.Timeout;
  private releaseLock?: () => void;
  private stopping?: Promise<void>;
  /** Where it listens, once started (the port chosen when asked for 0). */
  address = '';
  metricsAddress = '';

  private constructor(readonly root: Root, readonly identity: HostIdentity, private readonly options: DaemonOptions) {
    this.log = new Logger(options.logLevel ?? 'info');
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.files = new DaemonFiles(root);
    this.trust = new TrustStore(root);
    this.data = new DataChannel(identity, () => this.clients, { handshakeMs: this.limits.handshakeMs, maxConnections: this.limits.maxConnections }, this.log);
  }

  /** Start serving; resolves once listening. Refused (EBUSY) while another daemon serves this root. */
  static async start(root: Root, options: DaemonOptions, services: ServiceFactory[]): Promise<Daemon> {
    const [host, port] = parseAddress(options.listen, 7443);
    const metricsAt = options.metrics !== undefined ? parseAddress(options.metrics) : undefined;
    if (metricsAt && !isLoopback(metricsAt[0])) throw new InvalidArgumentError(`--metrics ${options.metrics} is not a loopback address`, 'the metrics endpoint is served on 127.0.0.1 or ::1 only');
    const files = new DaemonFiles(root).ensure();
    const identity = await hostIdentity(root);
    const d = new Daemon(root, identity, options);
    await d.holdLock(files);
    try {
      const grpcModule = require('@grpc/grpc-js') as typeof grpc;
      d.reloadTrust();
      d.credentials = serverCredentials(grpcModule, identity, d.caPems(), d.limits.handshakeMs);
      d.grpcServer = new grpcModule.Server({
        'grpc.max_receive_message_length': MAX_MESSAGE,
        'grpc.max_send_message_length': MAX_MESSAGE,
        'grpc.keepalive_time_ms': KEEPALIVE_MS,
        'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
        'grpc.max_concurrent_streams': d.limits.maxStreamsPerConnection,
      });
      for (const factory of services) d.addService(grpcModule, factory(d));
      d.injector = withWideReceiveWindows(() => d.grpcServer!.createConnectionInjector(d.credentials!));
      await d.listen(host, port);
      const [dataHost, dataPort] = options.dataListen !== undefined ? parseAddress(options.dataListen) : [host, 0];
      await d.data.listen(dataHost, dataPort, d.caPems());
      if (metricsAt) await d.serveMetrics(metricsAt[0], metricsAt[1]);
      d.watchTrust();
      d.metrics.started.set({}, Math.floor(Date.now() / 1000));
      await files.write(files.status, {
        pid: process.pid, address: d.address, data: d.data.address, metrics: d.metricsAddress || undefined, fingerprint: identity.fingerprint, startedAt: new Date().toISOString(),
      });
      d.log.info('started', { root: root.dir, address: d.address, data: d.data.address, metrics: d.metricsAddress || undefined, fingerprint: identity.fingerprint, host: identity.name });
      return d;
    } catch (err) {
      await d.stop('failed start', 0);
      throw err;
    }
  }

  serving(): boolean {
    return this.state === 'serving';
  }

  /** Hold ROOT/locks/daemon.lock for the daemon's life (the kernel drops it if the process dies). */
  private async holdLock(files: DaemonFiles): Promise<void> {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    await new Promise<void>((acquired, failed) => {
      withLock(files.daemonLock, 'daemon', 0, async () => { acquired(); await held; }).catch((err: unknown) =>
        failed(err instanceof BusyError ? new BusyError(`a daemon already serves root ${this.root.dir}`, 'stop it first, or give another --root') : err));
    });
    this.releaseLock = release;
  }

  private listen(host: string, port: number): Promise<void> {
    const listener = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    listener.maxConnections = this.limits.maxConnections;
    this.listener = listener;
    return new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(new SystemError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`, err));
      listener.once('error', failed);
      listener.listen({ host, port }, () => {
        listener.off('error', failed);
        const a = listener.address() as net.AddressInfo;
        this.address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    if (this.state !== 'serving') return void socket.destroy();
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    this.connections.set(key, { socket });
    this.metrics.connections.set({}, this.connections.size);
    socket.on('close', () => {
      this.connections.delete(key);
      this.metrics.connections.set({}, this.connections.size);
    });
    socket.on('error', () => undefined); // a peer that vanished; grpc-js sees the close
    this.injector!.injectConnection(socket);
  }

  private serveMetrics(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.metrics.render());
      } else if (req.url === '/healthz') {
        res.writeHead(this.serving() ? 200 : 503, { 'content-type': 'text/plain' }).end(this.serving() ? 'serving\n' : 'draining\n');
      } else {
        res.writeHead(404).end();
      }
    });
    this.metricsServer = server;
    return new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(new SystemError(`cannot serve metrics on ${host}:${port}: ${err.code ?? err.message}`, err));
      server.once('error', failed);
      server.listen({ host, port }, () => {
        server.off('error', failed);
        const a = server.address() as net.AddressInfo;
        this.metricsAddress = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
        resolve();
      });
    });
  }

  // ---- trust: reloaded when the file changes; revocation cuts calls and connections

  private caPems(): string[] {
    // Revoked certificates stay verifiable, so their calls are told "revoked" and logged by name.
    return this.clients.map((c) => c.certificatePem);
  }

  reloadTrust(): void {
    let stamp = '';
    try {
      const st = fs.statSync(this.trust.file);
      stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch { /* no clients yet */ }
    if (stamp === this.trustStamp) return;
    const before = new Set(this.clients.filter((c) => !c.revokedAt).map((c) => c.fingerprint));
    let clients: TrustedClient[];
    try {
      clients = this.trust.all();
    } catch (err) {
      // A torn or broken file trusts nobody until it is fixed.
      this.log.error('trust store unreadable', { file: this.trust.file, error: (err as Error).message });
      clients = [];
    }
    this.trustStamp = stamp;
    this.clients = clients;
    this.credentials?.setCertificateAuthorities(this.caPems());
    this.data?.setCertificateAuthorities(this.caPems());
    const now = new Set(clients.filter((c) => !c.revokedAt).map((c) => c.fingerprint));
    this.metrics.trusted.set({}, now.size);
    const gone = [...before].filter((fp) => !now.has(fp));
    if (gone.length > 0) this.cut(gone);
  }

  private watchTrust(): void {
    try {
      this.watcher = fs.watch(this.files.dir, { persistent: false }, (_event, file) => {
        if (file === null || String(file) === 'trust.json') this.reloadTrust();
      });
      this.watcher.on('error', () => undefined);
    } catch { /* the poll below still sees changes */ }
    this.poller = setInterval(() => this.reloadTrust(), 2000);
    this.poller.unref();
  }

  /** End every call of these clients with PERMISSION_DENIED, then close their connections. */
  private cut(fingerprints: string[]): void {
    const set = new Set(fingerprints);
    for (const call of this.calls) {
      if (call.fingerprint && set.has(call.fingerprint)) {
        const who = this.clients.find((c) => c.fingerprint === call.fingerprint)?.name ?? call.fingerprint;
        call.fail(new TsvzError('EPERM', `client ${who} was revoked`, { hint: 'ask for a new token' }));
      }
    }
    this.data.cut(set);
    const conns = [...this.connections.values()].filter((c) => c.fingerprint && set.has(c.fingerprint));
    for (const fp of set) this.log.warn('revoked', { fingerprint: fp, connections: conns.length });
    // A moment for the statuses above to reach the peer before its connection goes.
    setTimeout(() => { for (const c of conns) c.socket.destroy(); }, 100).unref();
  }

  // ---- calls

  private addService(grpcModule: typeof grpc, handlers: Handler[]): void {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const impl: grpc.UntypedServiceImplementation = {};
    for (const h of handlers) {
      const m = h.method;
      definition[m.name] = {
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        requestSerialize: (v: unknown) => m.request.encode(v),
        requestDeserialize: (b: Buffer) => m.request.decode(b),
        responseSerialize: (v: unknown) => m.response.encode(v),
        responseDeserialize: (b: Buffer) => m.response.decode(b),
        originalName: m.name,
      };
      impl[m.name] = this.implement(grpcModule, h);
    }
    this.grpcServer!.addService(definition as grpc.ServiceDefinition, impl);
  }

  private implement(grpcModule: typeof grpc, h: Handler): grpc.UntypedHandleCall {
    const toWire = (err: unknown) => toWireError(err, grpcModule.Metadata);
    switch (h.kind) {
      case 'unary':
        return (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          this.begin(call, h, false, (err, res) => (err === undefined ? callback(null, res) : callback(toWire(err))), (ctx) => h.run(ensureMessage(call.request), ctx));
        };
      case 'clientStream':
        return (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          this.begin(call, h, false, (err, res) => (err === undefined ? callback(null, res) : callback(toWire(err))), (ctx) => h.run(messagesOf(call), ctx));
        };
      case 'serverStream':
        return (call: grpc.ServerWritableStream<unknown, unknown>) => {
          this.begin(call, h, h.follows === true, (err) => (err === undefined ? call.end() : call.emit('error', toWire(err))), async (ctx) => h.run(ensureMessage(call.request), call, ctx));
        };
      case 'bidi':
        return (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          this.begin(call, h, false, (err) => (err === undefined ? call.end() : call.emit('error', toWire(err))), async (ctx) => h.run(messagesOf(call), call, ctx));
        };
    }
  }

  /** The gate, the bookkeeping and the answer of one call. */
  private begin(
    call: SurfaceCall,
    h: Handler,
    follows: boolean,
    answer: (err: unknown, res?: unknown) => void,
    run: (ctx: CallContext) => Promise<unknown>,
  ): void {
    const method = h.method.path;
    const started = performance.now();
    const peer = call.getPeer();
    const fingerprint = call.getAuthContext().sslPeerCertificate?.fingerprint256;
    const finish = (code: number, err?: unknown, client?: TrustedClient) => {
      const seconds = (performance.now() - started) / 1000;
      const status = statusName(code);
      this.metrics.requests.add({ method, code: status });
      this.metrics.duration.observe({ method }, seconds);
      const fields: Record<string, unknown> = { method, client: client?.name, fingerprint: client ? undefined : fingerprint, peer, code: status, ms: Math.round(seconds * 10000) / 10 };
      if (err !== undefined) fields.error = err instanceof Error ? err.message : String(err);
      this.log.log(code === 0 ? 'info' : 'warn', 'call', fields);
    };
    if (this.state !== 'serving') {
      const err = new TsvzError('EUNAVAILABLE', 'the daemon is shutting down', { hint: 'retry when it is back' });
      answer(err);
      return finish(grpcCodeOf(err), err);
    }
    let client: TrustedClient | undefined;
    if (!(h.kind === 'unary' && h.anonymous)) {
      this.reloadTrust();
      const refusal = refusalFor(this.clients, fingerprint);
      if (refusal) {
        this.metrics.refused.add({ reason: refusal.code });
        answer(refusal);
        return finish(grpcCodeOf(refusal), refusal);
      }
      client = this.clients.find((c) => c.fingerprint === fingerprint);
      const conn = this.connections.get(peer);
      if (conn) conn.fingerprint = fingerprint;
    }
    const abort = new AbortController();
    let settled = false;
    let resolveDone!: () => void;
    const active: ActiveCall = {
      method, fingerprint, follows, abort,
      done: new Promise<void>((r) => { resolveDone = r; }),
      fail: (err) => settle(err),
    };
    const settle = (err: unknown, res?: unknown) => {
      if (settled) return;
      settled = true;
      this.calls.delete(active);
      this.metrics.inFlight.add({ method }, -1);
      if (err !== undefined && !abort.signal.aborted) abort.abort(err);
      const cancelled = call.cancelled;
      try {
        if (!cancelled) answer(err, res);
      } catch { /* the call is gone */ }
      finish(cancelled ? 1 : err === undefined ? 0 : grpcCodeOf(err), err, client);
      resolveDone();
    };
    this.calls.add(active);
    this.metrics.inFlight.add({ method }, 1);
    call.on('cancelled', () => {
      if (!abort.signal.aborted) abort.abort(new TsvzError('ECANCELLED', 'the caller cancelled'));
      settle(new TsvzError('ECANCELLED', 'the caller cancelled'));
    });
    const ctx: CallContext = { method, client, peer, signal: abort.signal };
    Promise.resolve().then(() => run(ctx)).then((res) => settle(undefined, res), (err: unknown) => settle(err ?? new Error('failed')));
  }

  // ---- shutdown

  /**
   * Stop: refuse new calls and connections, end following streams now, wait
   * up to `drainMs` for the rest, then end those too and close everything.
   */
  stop(reason: string, drainMs = this.limits.drainMs): Promise<void> {
    this.stopping ??= this.drain(reason, drainMs);
    return this.stopping;
  }

  private async drain(reason: string, drainMs: number): Promise<void> {
    this.state = 'draining';
    this.log.info('draining', { reason, calls: this.calls.size, drainMs });
    this.listener?.close();
    const unavailable = () => new TsvzError('EUNAVAILABLE', 'the daemon is shutting down', { hint: 'retry when it is back' });
    for (const call of this.calls) if (call.follows) call.fail(unavailable());
    const pending = [...this.calls].map((c) => c.done);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all(pending).then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), drainMs); }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.log.warn('drain timed out', { calls: [...this.calls].map((c) => c.method) });
      for (const call of this.calls) call.fail(unavailable());
    }
    this.state = 'stopped';
    this.watcher?.close();
    if (this.poller) clearInterval(this.poller);
    // The last answers still have to leave: close the sessions gently (GOAWAY, then
    // wait for their streams), and only then cut what is left.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      if (this.grpcServer) this.grpcServer.tryShutdown(() => { clearTimeout(timer); resolve(); });
      else resolve();
    });
    // A finished call's answer may still be on its way out of the HTTP/2 session: the
    // client closes its connection once it has it, so give clients a moment to go first.
    await pollUntil(() => this.connections.size === 0, { timeoutMs: 2000, maxMs: 20 });
    this.injector?.destroy();
    this.grpcServer?.forceShutdown();
    this.data?.close();
    for (const c of this.connections.values()) c.socket.destroy();
    await new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r()));
    this.metricsServer?.closeAllConnections();
    try { fs.rmSync(this.files.status, { force: true }); } catch { /* best effort */ }
    this.releaseLock?.();
    this.log.info('stopped', { reason });
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A request that did not decode is the caller's error. */
function ensureMessage<T>(m: T | BadMessage): T {
  if (m instanceof BadMessage) throw new InvalidArgumentError(`malformed request: ${m.reason}`);
  return m;
}

async function* messagesOf<T>(call: AsyncIterable<T | BadMessage>): AsyncGenerator<T> {
  for await (const m of call) yield ensureMessage(m);
}
