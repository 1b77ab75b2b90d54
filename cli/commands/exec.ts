import type { Command } from 'commander';
import { openContainer } from '../context';

export function register(program: Command): void {
  program
    .command('exec')
    .description("run a command inside a running container; exits with the command's status")
    .argument('<name>', 'container name')
    .argument('<command...>', 'command and arguments (after --)')
    .option('-t, --tty', 'allocate a pty (interactive)')
    .option('-e, --env <NAME=value...>', 'extra environment')
    .option('-w, --workdir <dir>', 'working directory inside', '/')
    .action(async (name: string, command: string[], o, cmd: Command) => {
      const { execInContainer } = await import('../../ops/exec');
      process.exitCode = await execInContainer(openContainer(cmd, name), command, { tty: o.tty, env: o.env, cwd: o.workdir });
    });
}
