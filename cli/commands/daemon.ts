import type { Command } from 'commander';
import { rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  const daemon = program
    .command('daemon')
    .description("this host's daemon: serve other hosts over mutual TLS (the default), or print its systemd unit");

  daemon
    .command('run', { isDefault: true })
    .description('serve in the foreground until SIGTERM (the default: `tsvz daemon`); makes the host identity on first start')
    .option('--listen <host:port>', 'address to serve on', '0.0.0.0:7443')
    .option('--data-listen <host:port>', "address of the data channel a migration's bulk bytes take (default: the --listen host, any free port)")
    .option('--metrics <host:port>', 'Prometheus endpoint on a loopback address, e.g. 127.0.0.1:9443')
    .option('--max-upload <size>', 'bytes one upload may carry', '64G')
    .option('--upload-quota <size>', 'bytes all uploads in progress may hold on disk', '128G')
    .option('--upload-idle <duration>', 'an upload that sends nothing this long ends', '60s')
    .option('--drain <duration>', 'on SIGTERM, how long calls in flight may take to finish', '30s')
    .option('--log-level <level>', 'debug | info | warn | error', 'info')
    .option('--backup-keep <rules>', "retention for the backups other hosts ship here, e.g. last=3,daily=7 (default: each sender's)")
    .option('--backup-pool <pool>', "the pool other hosts' backups are received into (default: the pool named backups, else a dir pool of the store's own)")
    .action(async (o, cmd: Command) => {
      const { parseDuration, parseSize } = await import('../../lib/units');
      const { InvalidArgumentError } = await import('../../lib/errors');
      if (!['debug', 'info', 'warn', 'error'].includes(o.logLevel)) throw new InvalidArgumentError(`invalid --log-level "${o.logLevel}"`);
      const { parseKeepPolicy } = await import('../../backup/retention');
      const backupKeep = o.backupKeep === undefined ? undefined : parseKeepPolicy(o.backupKeep);
      if (o.backupPool !== undefined) {
        const { PoolCatalog } = await import('../../storage');
        new PoolCatalog(rootOf(cmd)).get(o.backupPool); // "no such pool" before serving
      }
      const { Daemon } = await import('../../daemon/server');
      const { containersService } = await import('../../daemon/services/containers');
      const { hostService } = await import('../../daemon/services/host');
      const { trustService } = await import('../../daemon/services/trust');
      const { healthService } = await import('../../daemon/services/health');
      const { migrationService } = await import('../../migrate/service');
      const { backupService } = await import('../../backup/service');
      const { startScheduler } = await import('../../backup/daemon');
      const d = await Daemon.start(rootOf(cmd), {
        listen: o.listen,
        dataListen: o.dataListen,
        metrics: o.metrics,
        logLevel: o.logLevel,
        limits: {
          maxUploadBytes: parseSize(o.maxUpload, '--max-upload'),
          uploadQuotaBytes: parseSize(o.uploadQuota, '--upload-quota'),
          idleMs: parseDuration(o.uploadIdle, '--upload-idle'),
          drainMs: parseDuration(o.drain, '--drain'),
        },
      }, [containersService, hostService, trustService, migrationService, (ctx) => backupService(ctx, { pool: o.backupPool, keep: backupKeep }), healthService(['tsvz.v1.Containers', 'tsvz.v1.Host', 'tsvz.v1.Trust', 'tsvz.v1.Migration', 'tsvz.v1.Backups'])]);
      const scheduler = startScheduler(d);
      await new Promise<void>((resolve) => {
        // Backup runs under way get the drain's time to finish, no more (the next start records them interrupted).
        const runsDone = () => Promise.race([scheduler.stop(), new Promise<void>((r) => setTimeout(r, d.limits.drainMs).unref())]);
        const onSignal = (signal: NodeJS.Signals) => { void runsDone().then(() => d.stop(signal)).then(resolve); };
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
      });
    });

  daemon
    .command('unit')
    .description('print a systemd unit that runs the daemon on this root: tsvz daemon unit > /etc/systemd/system/tsvz.service')
    .option('--listen <host:port>', 'address to serve on', '0.0.0.0:7443')
    .option('--data-listen <host:port>', 'address of the data channel (default: the --listen host, any free port)')
    .option('--metrics <host:port>', 'Prometheus endpoint on a loopback address')
    .action(async (o, cmd: Command) => {
      const path = await import('node:path');
      const { systemdUnit } = await import('../../daemon/unit');
      const tsvz = path.resolve(__dirname, ...(__filename.includes(`${path.sep}bundle${path.sep}`) ? ['..', '..'] : ['..', '..', '..']), 'bin', 'tsvz');
      print(systemdUnit({ node: process.execPath, tsvz, root: rootOf(cmd).dir, listen: o.listen, dataListen: o.dataListen, metrics: o.metrics }));
    });
}
