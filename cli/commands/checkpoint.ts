import type { Command } from 'commander';
import { openContainer, printJson, printTable } from '../context';
import { print } from '../output';
import { onRemote, remoteOf } from '../remote';

export function register(program: Command): void {
  const checkpoint = program
    .command('checkpoint')
    .description('dump a running container with CRIU (stops it unless --leave-running); list, inspect, export and remove checkpoints');

  checkpoint
    .command('create', { isDefault: true })
    .description('dump a running container (the default: `tsvz checkpoint p1`)')
    .argument('<name>', 'container name')
    .option('--name <id>', 'checkpoint id (default: a timestamp)')
    .option('--leave-running', 'keep the container running after the dump')
    .option('--tcp-established', 'dump established TCP connections')
    .action(async (name: string, o, cmd: Command) => {
      const meta = remoteOf(cmd)
        ? await onRemote(cmd, (client, api) => client.unary(api.Containers.Checkpoint, { name, id: o.name, leaveRunning: o.leaveRunning === true, tcpEstablished: o.tcpEstablished === true }))
        : await (await import('../../ops/checkpoint')).checkpointContainer(openContainer(cmd, name), {
          name: o.name,
          leaveRunning: o.leaveRunning,
          tcpEstablished: o.tcpEstablished,
        });
      print(`${meta.id}\n`);
    });

  checkpoint
    .command('list')
    .description("a container's checkpoints")
    .argument('<name>', 'container name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o, cmd: Command) => {
      const { listCheckpoints } = await import('../../ops/checkpoint');
      const { formatBytes } = await import('../../lib/units');
      const all = listCheckpoints(openContainer(cmd, name));
      if (o.json) return printJson(all);
      const ms = (v?: number) => (v === undefined ? '-' : v.toFixed(0));
      printTable([
        ['ID', 'CREATED', 'CRIU', 'KERNEL', 'MEMORY WRITTEN', 'FROZEN MS', 'DUMP MS', 'SIZE', 'RUNNING AFTER', 'RESTORABLE'],
        ...all.map((m) => [
          m.id, m.createdAt, m.criuVersion, m.kernel,
          m.pagesWritten === undefined ? '-' : formatBytes(m.pagesWritten * 4096),
          ms(m.frozenMs), ms(m.dumpMs), formatBytes(m.sizeBytes), m.leaveRunning ? 'yes' : 'no',
          m.filesRolledBack ? `no (files rolled back to ${m.filesRolledBack.snapshot})` : 'yes',
        ]),
      ]);
    });

  checkpoint
    .command('inspect')
    .description("what a checkpoint holds, read from CRIU's images: processes, memory, open files, sockets")
    .argument('<name>', 'container name')
    .argument('[id]', 'checkpoint id (default: the newest)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, id: string | undefined, o, cmd: Command) => {
      const { inspectCheckpointOf } = await import('../../ops/checkpoint');
      const { formatBytes } = await import('../../lib/units');
      const { meta, report: r } = inspectCheckpointOf(openContainer(cmd, name), id);
      if (o.json) return printJson({ checkpoint: meta, ...r });
      const out = (text: string) => print(text);
      out(`checkpoint ${meta.id} of ${meta.container}, ${meta.createdAt}, CRIU ${meta.criuVersion}\n\n`);
      printTable([
        ['PID', 'PPID', 'THREADS', 'COMM', 'STATE', 'VMAS', 'MAPPED', 'WRITTEN'],
        ...r.processes.map((p) => [String(p.pid), String(p.ppid), String(p.threads), p.comm ?? '?', p.state ?? '?', String(p.vmas), formatBytes(p.vmaBytes), formatBytes(p.dumpedBytes)]),
      ]);
      out(`\nmemory: ${r.memory.vmas} mappings, ${formatBytes(r.memory.bytes)} mapped, ${formatBytes(r.memory.bytesWritten)} written (${r.memory.pagesWritten} pages)\n\n`);
      printTable([['PID', 'FD', 'TYPE', 'PATH'], ...r.files.map((f) => [String(f.pid), String(f.fd), f.type, f.path ?? ''])]);
      if (r.sockets.length > 0) {
        out('\n');
        printTable([
          ['PID', 'FD', 'PROTO', 'STATE', 'LOCAL', 'REMOTE'],
          ...r.sockets.map((k) => {
            const addr = (a: string, port: number) => (k.family === 'inet6' ? `[${a}]:${port}` : `${a}:${port}`);
            return [String(k.pid), String(k.fd), `${k.proto}${k.family === 'inet6' ? '6' : ''}`, k.state, addr(k.src, k.srcPort), addr(k.dst, k.dstPort)];
          }),
        ]);
      }
    });

  checkpoint
    .command('export')
    .description('write a checkpoint (images, metadata, config, checksums) to one archive; FILE.tar.zst compresses')
    .argument('<name>', 'container name')
    .argument('<id>', 'checkpoint id')
    .argument('<file>', 'archive to write: FILE.tar or FILE.tar.zst')
    .action(async (name: string, id: string, file: string, _o, cmd: Command) => {
      const { exportCheckpoint } = await import('../../ops/export');
      const { hostSigner } = await import('../../daemon/signers');
      const c = openContainer(cmd, name);
      const m = await exportCheckpoint(c, id, file, await hostSigner(c.root));
      print(`exported ${m.checkpoint.id} of ${name} to ${file} (${m.files.length} files)\n`);
    });

  checkpoint
    .command('rm')
    .description('remove a checkpoint')
    .argument('<name>', 'container name')
    .argument('<id>', 'checkpoint id')
    .action(async (name: string, id: string, _o, cmd: Command) => {
      const { removeCheckpoint } = await import('../../ops/checkpoint');
      await removeCheckpoint(openContainer(cmd, name), id);
      print(`removed ${id}\n`);
    });
}
