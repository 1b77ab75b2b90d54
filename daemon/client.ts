import type * as grpc from '@grpc/grpc-js';
import { TsvzError } from '../lib/errors';
import type { Root } from '../lib/root';
import { writeMessage } from './bulk';
import { clientCredentials, TLS_SERVER_NAME } from './credentials';
import { HostIdentity, hostIdentity } from './identity';
import { KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, MAX_MESSAGE } from './limits';
import { BadMessage, Method } from './proto';
import { parseAddress, RemoteStore } from './remotes';
import { connectData } from './data-channel';
import type { TLSSocket } from 'node:tls';
import { fromWireError } from './wire-errors';

/**
 * A connection to another host's daemon, authenticated both ways: this
 * host's certificate as the client's, the remote's pinned certificate as
 * the only one accepted. Calls are typed by their Method (proto.ts); a
 * failed call throws the TsvzError the remote raised, prefixed with the
 * remote's name. Streams carry backpressure (bulk.ts). Retries are off:
 * nothing is sent twice behind the caller's back, and bulk streams keep no
 * retry buffer.
 */
export interface CallOptions {
  /** Milliseconds before the call gives up (DEADLINE_EXCEEDED). Default: none (keepalive notices a dead peer). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface Peer {
  /** The name errors are prefixed with. */
  name: string;
  address: string;
  fingerprint: string;
  certificatePem: string;
}

export class RemoteClient {
  private readonly client: grpc.Client;

  constructor(private readonly grpcModule: typeof grpc, readonly peer: Peer, private readonly identity: HostIdentity, extraOptions: grpc.ChannelOptions = {}) {
    this.client = new grpcModule.Client(peer.address, clientCredentials(grpcModule, identity, peer.certificatePem, peer.fingerprint), {
      'grpc.ssl_target_name_override': TLS_SERVER_NAME,
      'grpc.default_authority': TLS_SERVER_NAME,
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
      'grpc.keepalive_time_ms': KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.enable_retries': 0,
      ...extraOptions,
    });
  }

  /** A client for remote `name` of this root (remotes.json), presenting this host's identity. */
  static async connect(root: Root, name: string, extraOptions: grpc.ChannelOptions = {}): Promise<RemoteClient> {
    const remote = new RemoteStore(root).get(name);
    const identity = await hostIdentity(root);
    const grpcModule = require('@grpc/grpc-js') as typeof grpc;
    return new RemoteClient(grpcModule, remote, identity, extraOptions);
  }

  close(): void {
    this.client.close();
  }

  /** A connection to the remote's data channel (daemon/data-channel.ts) at `port`, carrying `ticket` first. */
  openData(port: number, ticket: string, timeoutMs: number): Promise<TLSSocket> {
    const [host] = parseAddress(this.peer.address);
    return connectData(this.identity, host, port, this.peer, ticket, timeoutMs);
  }

  /** Wait until the connection is up (TLS handshake done), retrying until the deadline. */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(this.error({ code: 14, details: err.message })) : resolve()));
    });
  }

  /**
   * Connect now; resolves when connected, or at the first failed attempt (a
   * refused address, a certificate that is not the pinned one): the next
   * call then fails at once with grpc-js's reason instead of retrying.
   */
  connect(timeoutMs: number): Promise<void> {
    const channel = this.client.getChannel();
    const { READY, TRANSIENT_FAILURE, SHUTDOWN } = this.grpcModule.connectivityState;
    const deadline = Date.now() + timeoutMs;
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        if (state === READY || state === TRANSIENT_FAILURE || state === SHUTDOWN) return resolve();
        channel.watchConnectivityState(state, deadline, (err) => (err ? reject(this.error({ code: 4, details: `no connection within ${timeoutMs} ms` })) : check()));
      };
      check();
    });
  }

  unary<Req, Res>(m: Method<Req, Res>, req: Req, opts: CallOptions = {}): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const call = this.client.makeUnaryRequest<Req, Res>(m.path, (v) => m.request.encode(v), this.decoder(m), req, this.callOptions(opts), (err, res) => {
        if (err) reject(this.error(err));
        else resolve(res as Res);
      });
      this.cancelOnAbort(call, opts.signal);
    });
  }

  /** A server stream's messages; breaking out of the loop cancels the call. */
  async *serverStream<Req, Res>(m: Method<Req, Res>, req: Req, opts: CallOptions = {}): AsyncGenerator<Res> {
    const call = this.client.makeServerStreamRequest<Req, Res>(m.path, (v) => m.request.encode(v), this.decoder(m), req, this.callOptions(opts));
    this.cancelOnAbort(call, opts.signal);
    let finished = false;
    try {
      for await (const msg of call as AsyncIterable<Res>) yield msg;
      finished = true;
    } catch (err) {
      throw this.error(err as grpc.ServiceError);
    } finally {
      if (!finished) call.cancel();
    }
  }

  /** A client stream: `messages` sent with backpressure, then the answer. */
  clientStream<Req, Res>(m: Method<Req, Res>, messages: AsyncIterable<Req> | Iterable<Req>, opts: CallOptions = {}): Promise<Res> {
    let call!: grpc.ClientWritableStream<Req>;
    const answer = new Promise<Res>((resolve, reject) => {
      call = this.client.makeClientStreamRequest<Req, Res>(m.path, (v) => m.request.encode(v), this.decoder(m), this.callOptions(opts), (err, res) => {
        if (err) reject(this.error(err));
        else resolve(res as Res);
      });
    });
    this.cancelOnAbort(call, opts.signal);
    const send = (async () => {
      for await (const msg of messages) await writeMessage(call, msg, opts.signal);
      call.end();
    })();
    // The answer decides: when the server ends the call early, sending stops with it.
    return Promise.all([answer, send.catch(() => undefined)]).then(([res]) => res, (err: unknown) => {
      call.cancel();
      throw err;
    });
  }

  /**
   * A bidirectional stream: write() with backpressure (bulk.ts
   * writeMessage), read as an async iterable; `failure` maps a broken call
   * to this client's errors.
   */
  duplex<Req, Res>(m: Method<Req, Res>, opts: CallOptions = {}): { call: grpc.ClientDuplexStream<Req, Res>; failure: (err: unknown) => TsvzError } {
    const call = this.client.makeBidiStreamRequest<Req, Res>(m.path, (v) => m.request.encode(v), this.decoder(m), this.callOptions(opts));
    this.cancelOnAbort(call, opts.signal);
    return { call, failure: (err) => this.error(err as grpc.ServiceError) };
  }

  private decoder<Req, Res>(m: Method<Req, Res>): (b: Buffer) => Res {
    return (b) => {
      const v = m.response.decode(b);
      if (v instanceof BadMessage) throw new Error(`malformed answer: ${v.reason}`);
      return v;
    };
  }

  private callOptions(opts: CallOptions): grpc.CallOptions {
    return opts.timeoutMs !== undefined ? { deadline: Date.now() + opts.timeoutMs } : {};
  }

  private cancelOnAbort(call: { cancel(): void }, signal?: AbortSignal): void {
    if (!signal) return;
    if (signal.aborted) call.cancel();
    else signal.addEventListener('abort', () => call.cancel(), { once: true });
  }

  private error(err: Partial<grpc.ServiceError>): TsvzError {
    return fromWireError(this.peer.name, err);
  }
}
