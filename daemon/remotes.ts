import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { validateName } from '../lib/names';
import type { Root } from '../lib/root';
import { DaemonFiles } from './files';

/**
 * The hosts this one calls (ROOT/daemon/remotes.json): name, address and the
 * pinned certificate of each, written by `tsvz remote add` after enrolment.
 */
export interface Remote {
  name: string;
  /** host:port, as given to `remote add`. */
  address: string;
  fingerprint: string;
  certificatePem: string;
  /** The name the remote host gives itself (its certificate's CN). */
  hostName: string;
  addedAt: string;
}

interface RemotesFile {
  version: 1;
  remotes: Remote[];
}

export class RemoteStore {
  private readonly files: DaemonFiles;

  constructor(root: Root) {
    this.files = new DaemonFiles(root);
  }

  list(): Remote[] {
    return this.files.read<RemotesFile>(this.files.remotes, { version: 1, remotes: [] }).remotes;
  }

  get(name: string): Remote {
    validateName(name, 'remote');
    const r = this.list().find((x) => x.name === name);
    if (!r) throw new NotFoundError(`no remote ${name}`, 'see `tsvz remote list`, or add it with `tsvz remote add`');
    return r;
  }

  async add(remote: Remote): Promise<void> {
    validateName(remote.name, 'remote');
    await this.files.locked(async () => {
      const all = this.list();
      if (all.some((x) => x.name === remote.name)) throw new AlreadyExistsError(`remote ${remote.name} already exists`, `remove it first with \`tsvz remote rm ${remote.name}\``);
      await this.files.write(this.files.remotes, { version: 1, remotes: [...all, remote] } satisfies RemotesFile);
    });
  }

  async remove(name: string): Promise<Remote> {
    validateName(name, 'remote');
    return this.files.locked(async () => {
      const all = this.list();
      const r = all.find((x) => x.name === name);
      if (!r) throw new NotFoundError(`no remote ${name}`, 'see `tsvz remote list`');
      await this.files.write(this.files.remotes, { version: 1, remotes: all.filter((x) => x !== r) } satisfies RemotesFile);
      return r;
    });
  }
}

/** host:port with a port; IPv6 in brackets ([::1]:7443). Returns [host, port]. */
export function parseAddress(text: string, defaultPort?: number): [string, number] {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(text);
  const port = m?.[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!m || port === undefined || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid address "${text}"`, 'give HOST:PORT, e.g. 198.18.0.2:7443');
  return [m[1] ?? m[2], port];
}
