import { once } from 'node:events';
import { writeMessage } from '../bulk';
import { Health, HealthCheckResponse } from '../proto';
import { DaemonContext, Handler, serverStream, unary } from '../server';
import { NotFoundError } from '../../lib/errors';

/**
 * grpc.health.v1.Health, the standard health service: "" and each tsvz
 * service are SERVING until the daemon starts draining. Like every call,
 * it needs a trusted certificate; the metrics endpoint's /healthz is the
 * local probe.
 */
export function healthService(services: string[]): (d: DaemonContext) => Handler[] {
  return (d) => {
    const status = (service: string | undefined): HealthCheckResponse => {
      if (service && !services.includes(service)) throw new NotFoundError(`no service ${service}`);
      return { status: d.serving() ? 'SERVING' : 'NOT_SERVING' };
    };
    return [
      unary(Health.Check, async (req) => status(req.service)),
      serverStream(Health.Watch, async (req, call, ctx) => {
        await writeMessage(call, status(req.service), ctx.signal);
        // Only one change can come: the drain, which ends this call too.
        await once(ctx.signal, 'abort').catch(() => undefined);
      }, { follows: true }),
    ];
  };
}
