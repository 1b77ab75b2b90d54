import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';

export function register(program: Command): void {
  program
    .command('doctor')
    .description('what this host supports: cgroups, freezer, user namespaces, seccomp, CRIU, storage tools, uffd, soft-dirty; privileged containers')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { runDoctor } = await import('../../ops/doctor');
      const checks = await runDoctor(rootOf(cmd));
      if (o.json) return printJson(checks);
      printTable(checks.map((c) => [c.ok ? 'ok ' : 'no ', c.name, c.detail]));
    });
}
