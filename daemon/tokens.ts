import crypto = require('node:crypto');
import { InvalidArgumentError, LimitError, TsvzError } from '../lib/errors';
import type { Root } from '../lib/root';
import { fingerprintBytes, formatFingerprint } from './certificate';
import { DaemonFiles } from './files';

/**
 * Enrolment tokens (`tsvz trust token`). A token is 32 random bytes of
 * secret plus this host's certificate fingerprint, so the client that uses
 * it checks whom it talks to before it sends the secret (no trust on first
 * use). The host keeps only the secret's SHA-256 (ROOT/daemon/tokens.json),
 * with its expiry and, once spent, when and by whom: a token works once.
 */
export interface TokenRecord {
  /** The first 12 hex digits of the hash: what logs and `trust list` show. */
  id: string;
  hash: string;
  createdAt: string;
  expiresAt: string;
  usedAt?: string;
  usedBy?: string;
}

interface TokensFile {
  version: 1;
  tokens: TokenRecord[];
}

const TOKEN_VERSION = 1;
const SECRET_BYTES = 32;
/** Outstanding tokens at once: bounds the file a token loop could grow. */
export const MAX_TOKENS = 100;
/** Spent and expired records are kept this long after expiry, so a late reuse is told why. */
const KEEP_AFTER_EXPIRY_MS = 86_400_000;
export const MAX_TOKEN_LIFETIME_MS = 30 * 86_400_000;

export interface ParsedToken {
  fingerprint: string;
  secret: Buffer;
}

/** The token's text: base64url of version, fingerprint (32 bytes), secret (32 bytes). */
export function encodeToken(fingerprint: string, secret: Buffer): string {
  return Buffer.concat([Buffer.from([TOKEN_VERSION]), fingerprintBytes(fingerprint), secret]).toString('base64url');
}

export function parseToken(text: string): ParsedToken {
  const raw = /^[A-Za-z0-9_-]{1,200}$/.test(text) ? Buffer.from(text, 'base64url') : Buffer.alloc(0);
  if (raw.length !== 1 + 32 + SECRET_BYTES || raw[0] !== TOKEN_VERSION) {
    throw new InvalidArgumentError('that is not a tsvz enrolment token', 'copy the whole line `tsvz trust token` printed on the other host');
  }
  return { fingerprint: formatFingerprint(raw.subarray(1, 33)), secret: raw.subarray(33) };
}

function hashOf(secret: Buffer): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}

export class TokenStore {
  private readonly files: DaemonFiles;

  constructor(root: Root) {
    this.files = new DaemonFiles(root);
  }

  list(): TokenRecord[] {
    return this.files.read<TokensFile>(this.files.tokens, { version: 1, tokens: [] }).tokens;
  }

  /** A new token for a host whose certificate has `fingerprint`, valid for `lifetimeMs`. */
  async issue(fingerprint: string, lifetimeMs: number): Promise<{ token: string; record: TokenRecord }> {
    if (!(lifetimeMs > 0 && lifetimeMs <= MAX_TOKEN_LIFETIME_MS)) throw new InvalidArgumentError('a token expires within 30 days');
    const secret = crypto.randomBytes(SECRET_BYTES);
    const hash = hashOf(secret);
    const now = Date.now();
    const record: TokenRecord = { id: hash.slice(0, 12), hash, createdAt: new Date(now).toISOString(), expiresAt: new Date(now + lifetimeMs).toISOString() };
    await this.files.locked(async () => {
      const tokens = this.pruned(now);
      if (tokens.filter((t) => !t.usedAt && Date.parse(t.expiresAt) > now).length >= MAX_TOKENS) {
        throw new LimitError(`${MAX_TOKENS} enrolment tokens are outstanding`, 'wait for some to expire');
      }
      await this.files.write(this.files.tokens, { version: 1, tokens: [...tokens, record] } satisfies TokensFile);
    });
    return { token: encodeToken(fingerprint, secret), record };
  }

  /**
   * Spend the token whose secret is `secret` for `client`; the caller holds
   * the state lock (trust.ts adds the client in the same critical section).
   * Unknown, expired and spent tokens are EUNAUTHENTICATED.
   */
  async spendLocked(secret: Buffer, client: string): Promise<TokenRecord> {
    const now = Date.now();
    const tokens = this.pruned(now);
    const hash = hashOf(secret);
    const record = tokens.find((t) => t.hash.length === hash.length && crypto.timingSafeEqual(Buffer.from(t.hash), Buffer.from(hash)));
    if (!record) throw new TsvzError('EUNAUTHENTICATED', 'unknown enrolment token', { hint: 'ask the host for a new one (`tsvz trust token`)' });
    if (record.usedAt) throw new TsvzError('EUNAUTHENTICATED', `enrolment token ${record.id} was already used at ${record.usedAt}`, { hint: 'a token works once: ask for a new one' });
    if (Date.parse(record.expiresAt) <= now) throw new TsvzError('EUNAUTHENTICATED', `enrolment token ${record.id} expired at ${record.expiresAt}`, { hint: 'ask for a new one' });
    record.usedAt = new Date(now).toISOString();
    record.usedBy = client;
    await this.files.write(this.files.tokens, { version: 1, tokens } satisfies TokensFile);
    return record;
  }

  private pruned(now: number): TokenRecord[] {
    return this.list().filter((t) => Date.parse(t.expiresAt) + KEEP_AFTER_EXPIRY_MS > now);
  }
}
