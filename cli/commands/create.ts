import type { Command } from 'commander';
import type { NetRequest } from '../../ops/create';
import { rootOf } from '../context';
import { print } from '../output';

export function register(program: Command): void {
  program
    .command('create')
    .description('create a container from a template')
    .argument('<name>', 'container name')
    .option('--template <spec>', 'busybox | debian | tar:FILE', 'busybox')
    .option('--init <cmdline>', "init's command line (default: the template's /sbin/init)")
    .option('--hostname <name>', 'hostname inside (default: the container name)')
    .option('--memory <size>', 'memory limit, e.g. 256M')
    .option('--cpus <n>', 'CPU quota in CPUs, e.g. 0.5')
    .option('--pids <n>', 'maximum number of processes')
    .option('--net <mode>', 'none (own netns, loopback only) | bridge', 'none')
    .option('--ip <cidr>', 'address with --net bridge, e.g. 198.18.0.10/15')
    .option('--bridge <name>', 'host bridge with --net bridge', 'tsvzbr0')
    .option('-e, --env <NAME=value...>', 'environment for init and exec')
    .option('--stop-signal <signal>', 'signal `tsvz stop` sends to init')
    .option('--pool <name>', 'storage pool for the rootfs (see `tsvz pool list`)', 'default')
    .option('--privileged', 'no user namespace: root inside is root on the host (see docs/security.md)')
    .option('--shared-idmap', "use the id range shared by all such containers instead of one of the container's own")
    .option('--allow-syscall <name...>', 'let the container use a syscall the seccomp filter denies by default (bpf, perf_event_open, keyctl, add_key, request_key)')
    .action(async (name: string, o, cmd: Command) => {
      const { InvalidArgumentError } = await import('../../lib/errors');
      const { parseSize, parseCpus, parsePositiveInt } = await import('../../lib/units');
      const { splitCommandLine } = await import('../../lib/shell-words');
      const { createContainer } = await import('../../ops/create');
      const limits = {
        memoryBytes: o.memory !== undefined ? parseSize(o.memory, '--memory') : undefined,
        cpus: o.cpus !== undefined ? parseCpus(o.cpus) : undefined,
        pids: o.pids !== undefined ? parsePositiveInt(o.pids, '--pids') : undefined,
      };
      let net: NetRequest;
      if (o.net === 'none') {
        if (o.ip) throw new InvalidArgumentError('--ip needs --net bridge');
        net = { mode: 'none' };
      } else if (o.net === 'bridge') {
        if (!o.ip) throw new InvalidArgumentError('--net bridge needs --ip, e.g. --ip 198.18.0.10/15');
        net = { mode: 'bridge', address: o.ip, bridge: o.bridge };
      } else {
        throw new InvalidArgumentError(`unknown --net "${o.net}"`, 'use none or bridge');
      }
      const init = o.init === undefined ? undefined : splitCommandLine(o.init);
      if (init !== undefined && init.length === 0) throw new InvalidArgumentError('--init is empty');
      await createContainer(rootOf(cmd), name, {
        template: o.template,
        init,
        hostname: o.hostname,
        limits,
        net,
        env: o.env,
        stopSignal: o.stopSignal,
        pool: o.pool,
        privileged: o.privileged === true,
        sharedIdmap: o.sharedIdmap === true,
        allowSyscalls: o.allowSyscall,
      });
      print(`created ${name}\n`);
    });
}
