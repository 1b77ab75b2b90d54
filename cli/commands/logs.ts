import type { Command } from 'commander';
import { openContainer } from '../context';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  program
    .command('logs')
    .description("what the container's init wrote to its console")
    .argument('<name>', 'container name')
    .option('-f, --follow', 'keep printing until the container stops')
    .option('-n, --tail <lines>', 'only the last N lines')
    .action(async (name: string, o, cmd: Command) => {
      const { streamLogs } = await import('../../ops/logs');
      const { parsePositiveInt } = await import('../../lib/units');
      const tail = o.tail !== undefined ? (o.tail === '0' ? 0 : parsePositiveInt(o.tail, '--tail')) : undefined;
      // `tsvz logs p1 | head`: a reader that went away is not an error.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err; });
      if (!remoteOf(cmd)) return streamLogs(openContainer(cmd, name), process.stdout, { follow: o.follow, tail });
      const { once } = require('node:events') as typeof import('node:events');
      await onRemote(cmd, async (client, api) => {
        for await (const chunk of client.serverStream(api.Containers.Logs, { name, follow: o.follow === true, tail })) {
          // A slow reader slows the stream: the remote waits too (backpressure end to end).
          if (chunk.data && !process.stdout.write(chunk.data)) await once(process.stdout, 'drain');
        }
      });
    });
}
