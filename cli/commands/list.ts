import type { Command } from 'commander';
import { printJson, printTable, rootOf } from '../context';

export function register(program: Command): void {
  program
    .command('list')
    .alias('ls')
    .description('list containers')
    .option('--json', 'machine-readable output')
    .action(async (o, cmd: Command) => {
      const { listContainers } = await import('../../ops/info');
      const all = listContainers(rootOf(cmd));
      if (o.json) return printJson(all);
      printTable([['NAME', 'STATE', 'PID', 'IP', 'TEMPLATE'], ...all.map((c) => [c.name, c.state, c.initPid ? String(c.initPid) : '-', c.ip ?? '-', c.template])]);
    });
}
