import type { ContainerInfo } from '../ops/info';
import type { ContainerConfig } from '../runtime/config';
import { CorruptDataError } from '../lib/errors';
import { MAX_MESSAGE } from './limits';
import type { ContainerInfoMsg } from './proto';
import { securityOf } from '../ops/info';

/** ops/info.ts's ContainerInfo on the wire and back: `tsvz --remote H info --json` prints what `tsvz info --json` prints. */
export function infoToWire(info: ContainerInfo): ContainerInfoMsg {
  return {
    name: info.name,
    state: info.state,
    initPid: info.initPid,
    ip: info.ip,
    createdAt: info.createdAt,
    startedAt: info.startedAt,
    pool: info.pool,
    template: info.template,
    exit: info.exit,
    checkpoint: info.checkpoint,
    cgroup: info.cgroup,
    configJson: JSON.stringify(info.config),
  };
}

export function infoFromWire(m: ContainerInfoMsg): ContainerInfo {
  const text = m.configJson ?? '{}';
  let config: ContainerConfig;
  try {
    if (text.length > MAX_MESSAGE) throw new Error('too long');
    config = JSON.parse(text) as ContainerConfig;
  } catch (err) {
    throw new CorruptDataError(`the container's config from the remote is not JSON: ${(err as Error).message}`);
  }
  const info: ContainerInfo = {
    name: m.name ?? '',
    state: (m.state ?? 'stopped') as ContainerInfo['state'],
    initPid: m.initPid || undefined,
    ip: m.ip || undefined,
    createdAt: m.createdAt ?? '',
    startedAt: m.startedAt || undefined,
    pool: m.pool ?? '',
    template: m.template ?? '',
    exit: m.exit,
    checkpoint: m.checkpoint || undefined,
    cgroup: m.cgroup,
    security: securityOf(config),
    config,
  };
  // The same keys as a local info, in the same order, none of them undefined.
  for (const k of Object.keys(info) as (keyof ContainerInfo)[]) if (info[k] === undefined) delete info[k];
  return info;
}
