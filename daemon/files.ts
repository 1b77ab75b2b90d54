import fs = require('node:fs');
import path = require('node:path');
import { readJsonIfExists, writeFileAtomic, jsonText } from '../lib/atomic-file';
import { CorruptDataError } from '../lib/errors';
import { withLock } from '../lib/lock';
import type { Root } from '../lib/root';

/**
 * Where a host's daemon state lives, ROOT/daemon/ (0700, every file 0600):
 *   host.key, host.crt    this host's identity (identity.ts)
 *   trust.json            the clients allowed to call it (trust.ts)
 *   tokens.json           enrolment tokens, as hashes (tokens.ts)
 *   remotes.json          the hosts this one calls (remotes.ts)
 *   daemon.json           the running daemon: pid, addresses (status.ts)
 *   incoming/             uploads being received (removed when the call ends)
 * The CLI and the daemon change these files under one lock
 * (ROOT/locks/daemon-state.lock), so a token is used once even when two
 * enrolments race, and a `tsvz trust rm` is never lost to a daemon's write.
 */
export class DaemonFiles {
  readonly dir: string;

  constructor(readonly root: Root) {
    this.dir = path.join(root.dir, 'daemon');
  }

  get hostKey(): string { return path.join(this.dir, 'host.key'); }
  get hostCert(): string { return path.join(this.dir, 'host.crt'); }
  get trust(): string { return path.join(this.dir, 'trust.json'); }
  get tokens(): string { return path.join(this.dir, 'tokens.json'); }
  get remotes(): string { return path.join(this.dir, 'remotes.json'); }
  get status(): string { return path.join(this.dir, 'daemon.json'); }
  get incoming(): string { return path.join(this.dir, 'incoming'); }
  /** Held by the running daemon for its whole life: one daemon per root. */
  get daemonLock(): string { return path.join(this.root.locksDir, 'daemon.lock'); }

  ensure(): this {
    this.root.ensure();
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    return this;
  }

  /** Run `body` holding the lock on the daemon's state files. */
  locked<T>(body: () => Promise<T>): Promise<T> {
    this.ensure();
    return withLock(path.join(this.root.locksDir, 'daemon-state.lock'), 'daemon state', 10_000, body);
  }

  /** A state file's content, or `empty` when there is none; a file that is not JSON is ECORRUPT. */
  read<T>(file: string, empty: T): T {
    try {
      return readJsonIfExists<T>(file) ?? empty;
    } catch (err) {
      throw new CorruptDataError(`${file} is not valid JSON: ${(err as Error).message}`, 'restore it from a backup, or remove it');
    }
  }

  write(file: string, value: unknown): Promise<void> {
    this.ensure();
    return writeFileAtomic(file, jsonText(value), 0o600);
  }
}
