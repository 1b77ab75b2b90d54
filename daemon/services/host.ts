import { Host } from '../proto';
import { DaemonContext, Handler, unary } from '../server';
import { describeHost } from '../host-description';

/** tsvz.v1.Host: what this host is and can do (`tsvz remote info`). */
export function hostService(d: DaemonContext): Handler[] {
  return [unary(Host.Describe, () => describeHost(d.root, d.identity))];
}
