import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';
import { print, printError } from '../output';

export function register(program: Command): void {
  const trust = program
    .command('trust')
    .description('who may call this host: enrolment tokens, trusted clients, revocation');

  trust
    .command('token')
    .description('print a single-use enrolment token (it holds this host\'s certificate fingerprint); printed once')
    .option('--expires <duration>', 'how long it is valid, e.g. 10m, 1h, 2d', '1h')
    .action(async (o, cmd: Command) => {
      const { parseDuration } = await import('../../lib/units');
      const { hostIdentity } = await import('../../daemon/identity');
      const { TokenStore } = await import('../../daemon/tokens');
      const root = rootOf(cmd);
      const lifetime = parseDuration(o.expires, '--expires');
      const identity = await hostIdentity(root);
      const { token, record } = await new TokenStore(root).issue(identity.fingerprint, lifetime);
      print(`${token}\n`);
      printError(`token ${record.id} for ${identity.name} (${identity.fingerprint}), valid until ${record.expiresAt}; on the other host: tsvz remote add NAME ADDRESS --token TOKEN\n`);
    });

  trust
    .command('list')
    .description('the clients this host trusts (and those it revoked)')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { TrustStore } = await import('../../daemon/trust');
      const all = new TrustStore(rootOf(cmd)).all().map(({ certificatePem: _pem, ...rest }) => rest);
      if (o.json) return printJson(all);
      printTable([['NAME', 'FINGERPRINT', 'ADDED', 'STATUS'], ...all.map((c) => [c.name, c.fingerprint, c.addedAt, c.revokedAt ? `revoked ${c.revokedAt}` : 'trusted'])]);
    });

  trust
    .command('rm')
    .description('revoke a client: its calls are refused from now on and its open connections cut')
    .argument('<client>', 'client name (or certificate fingerprint)')
    .action(async (client: string, _o, cmd: Command) => {
      const { TrustStore } = await import('../../daemon/trust');
      const entry = await new TrustStore(rootOf(cmd)).revoke(client);
      print(`revoked ${entry.name}\n`);
    });
}
