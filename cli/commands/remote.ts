import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  const remote = program
    .command('remote')
    .description('other hosts this one drives (`tsvz --remote HOST ...`): add with a token, list, remove, describe');

  remote
    .command('add')
    .description("enrol with another host's daemon and pin its certificate")
    .argument('<name>', 'the name to call it by')
    .argument('<address>', 'its daemon, HOST:PORT (port 7443 when left out)')
    .requiredOption('--token <token>', 'a token from `tsvz trust token` on that host')
    .option('--as <name>', "the name that host will know this one by (default: this host's name)")
    .action(async (name: string, address: string, o, cmd: Command) => {
      const { addRemote } = await import('../../daemon/enrol');
      const r = await addRemote(rootOf(cmd), name, address, o.token, o.as);
      print(`added remote ${r.name} (${r.address}, ${r.hostName}, ${r.fingerprint})\n`);
    });

  remote
    .command('list')
    .alias('ls')
    .description('the remotes of this host')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { RemoteStore } = await import('../../daemon/remotes');
      const all = new RemoteStore(rootOf(cmd)).list().map(({ certificatePem: _pem, ...rest }) => rest);
      if (o.json) return printJson(all);
      printTable([['NAME', 'ADDRESS', 'HOST', 'FINGERPRINT'], ...all.map((r) => [r.name, r.address, r.hostName, r.fingerprint])]);
    });

  remote
    .command('rm')
    .description('forget a remote (its host still trusts this one until it revokes it)')
    .argument('<name>', 'remote name')
    .action(async (name: string, _o, cmd: Command) => {
      const { RemoteStore } = await import('../../daemon/remotes');
      await new RemoteStore(rootOf(cmd)).remove(name);
      print(`removed remote ${name}\n`);
    });

  remote
    .command('info')
    .description('tsvz, CRIU and kernel versions, CRIU features, CPU flags, cgroup mode, pools and their transfer formats')
    .argument('<name>', 'remote name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { RemoteClient } = await import('../../daemon/client');
      const { Host } = await import('../../daemon/proto');
      const client = await RemoteClient.connect(rootOf(cmd), name);
      let d;
      try {
        d = await client.unary(Host.Describe, {}, { timeoutMs: 60_000 });
      } finally {
        client.close();
      }
      if (o.json) return printJson(d);
      const yes = (b?: boolean) => (b ? 'yes' : 'no');
      printTable([
        ['host', d.name ?? ''],
        ['fingerprint', d.fingerprint ?? ''],
        ['tsvz', d.tsvzVersion ?? ''],
        ['criu', d.criuVersion || 'not installed'],
        ['kernel', `${d.kernel ?? ''} (${d.arch ?? ''})`],
        ['lazy pages (post-copy)', yes(d.criuFeatures?.lazyPages)],
        ['dirty tracking (pre-copy)', yes(d.criuFeatures?.memDirtyTrack)],
        ['cgroups', d.cgroupMode ?? ''],
        ['cpu flags', `${(d.cpuFlags ?? []).length} (${(d.cpuFlags ?? []).slice(0, 8).join(' ')}${(d.cpuFlags ?? []).length > 8 ? ' ...' : ''})`],
        ...(d.pools ?? []).map((p) => [`pool ${p.name}`, `${p.driver}; sends ${(p.transferFormats ?? []).join('/')}${p.incrementalSend ? ', incremental' : ''}${p.error ? `; ${p.error}` : ''}`]),
      ]);
    });
}
