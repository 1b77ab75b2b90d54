import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';

export function register(program: Command): void {
  program
    .command('doctor')
    .description('what this host supports: cgroups, freezer, user namespaces, seccomp, CRIU, storage tools, uffd, soft-dirty; privileged containers')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { runDoctor } = await import('../../ops/doctor');
      const { daemonStatus } = await import('../../daemon/status');
      const checks = await runDoctor(rootOf(cmd));
      const d = daemonStatus(rootOf(cmd));
      const identity = d.fingerprint ? `fingerprint ${d.fingerprint}` : 'no identity yet (made by `tsvz daemon` or `tsvz trust token`)';
      checks.push({ name: 'daemon', ok: d.running, detail: d.running ? `running (pid ${d.pid}) on ${d.address}; ${identity}` : `not running; ${identity}` });
      const { scheduleChecks } = await import('../../backup/doctor');
      checks.push(...scheduleChecks(rootOf(cmd)));
      if (o.json) return printJson(checks);
      printTable(checks.map((c) => [c.ok ? 'ok ' : 'no ', c.name, c.detail]));
    });
}
