import crypto = require('node:crypto');
import fs = require('node:fs');
import path = require('node:path');
import { writeJsonAtomic } from '../lib/atomic-file';
import type { CgroupLimits } from '../runtime/cgroups';
import { ContainerConfig, DEFAULT_ENV, NetConfig } from '../runtime/config';
import { Container } from '../runtime/container';
import { mergeEnv } from '../lib/env';
import { AlreadyExistsError, InvalidArgumentError } from '../lib/errors';
import { faultPoint } from '../lib/fault';
import { validateName } from '../lib/names';
import { ContainerPaths, Root } from '../runtime/paths';
import { SIGNALS } from '../lib/proc';
import { splitCommandLine } from '../lib/shell-words';
import { writeState } from '../runtime/state';
import { resolveTemplate } from '../runtime/templates';
import { withUndo } from '../lib/undo';
import { DEFAULT_POOL } from '../storage/pool-catalog';
import { withStore } from '../storage/volumes';

export interface CreateOptions {
  template: string;
  init?: string;
  hostname?: string;
  limits: CgroupLimits;
  net: { mode: 'none' } | { mode: 'bridge'; ip: string; bridge?: string };
  env?: string[];
  stopSignal?: string;
  /** Storage pool for the rootfs (default: "default", a directory under the root). */
  pool?: string;
}

/** Prefix of the directory a container is built in before it is renamed into place. */
export function creatingPrefix(name: string): string {
  return `.creating-${name}-`;
}

/**
 * Create a container: its root filesystem from a template (in a volume of
 * its pool), its config and state. Built in a hidden directory and renamed
 * into place at the end, so a container is either fully created or absent
 * (a failure deletes the volume; a CLI killed half-way leaves a hidden
 * directory, and maybe a volume, that `destroy --force` removes).
 */
export async function createContainer(root: Root, name: string, opts: CreateOptions): Promise<ContainerConfig> {
  validateName(name);
  const env = validateEnv(opts.env ?? []);
  const hostname = opts.hostname ?? name;
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})$/.test(hostname)) throw new InvalidArgumentError(`invalid hostname "${hostname}"`);
  const stopSignal = opts.stopSignal?.toUpperCase();
  if (stopSignal !== undefined && !(stopSignal in SIGNALS)) throw new InvalidArgumentError(`unknown signal "${opts.stopSignal}"`);
  const net = await resolveNet(opts.net);
  const template = await resolveTemplate(opts.template);
  const init = opts.init !== undefined ? splitCommandLine(opts.init) : template.defaults.init;
  if (init.length === 0) throw new InvalidArgumentError('--init is empty');
  root.ensure();
  const c = new Container(root, name);

  const pool = opts.pool ?? DEFAULT_POOL;
  validateName(pool, 'pool');

  return c.locked(async () => {
    if (c.exists()) throw new AlreadyExistsError(`container ${name} already exists`);
    return withStore(root, pool, (store) => withUndo(async (undo) => {
      const building = path.join(root.containersDir, `${creatingPrefix(name)}${crypto.randomBytes(4).toString('hex')}`);
      fs.mkdirSync(building, { mode: 0o700 });
      undo.add('remove partial container', () => fs.rmSync(building, { recursive: true, force: true }));
      const paths = new ContainerPaths(building);
      const config: ContainerConfig = {
        version: 1,
        name,
        hostname,
        template: template.name,
        init,
        stopSignal: stopSignal ?? template.defaults.stopSignal,
        env: mergeEnv(DEFAULT_ENV, env),
        limits: opts.limits,
        net,
        pool,
        createdAt: new Date().toISOString(),
      };
      // Written first: it names the pool, so `destroy --force` of a half-created container finds its volume.
      writeJsonAtomic(paths.config, config);
      const rootfs = await store.createRootfs(name, building, undo);
      await template.populate(rootfs, { root, hostname });
      faultPoint('create:populated');
      writeState(paths, { status: 'created' });
      fs.renameSync(building, c.paths.dir);
      return config;
    }));
  });
}

export async function resolveNet(net: CreateOptions['net']): Promise<NetConfig> {
  if (net.mode === 'none') return { mode: 'none' };
  const { parseContainerAddress } = await import('../runtime/network');
  const parsed = parseContainerAddress(net.ip);
  return { mode: 'bridge', bridge: net.bridge ?? 'tsvzbr0', address: `${parsed.address}/${parsed.prefix}`, gateway: parsed.gateway };
}

/** The native helpers take at most 256 list arguments; the defaults use a few. */
const MAX_ENV = 200;

function validateEnv(env: string[]): string[] {
  if (env.length > MAX_ENV) throw new InvalidArgumentError(`too many environment entries (${env.length}, at most ${MAX_ENV})`);
  for (const e of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e) || e.includes('\0')) throw new InvalidArgumentError(`invalid environment entry "${e}"`, 'use NAME=value');
  }
  return env;
}
