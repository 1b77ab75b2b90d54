import net = require('node:net');
import { Container } from '../runtime/container';
import { InvalidStateError, LaunchError } from '../lib/errors';

/** Ctrl-a then q detaches (screen-like, as `lxc-console` does). */
const ESCAPE = 0x01;
const DETACH = 'q'.charCodeAt(0);

/**
 * Attach the terminal to the container's console, a pty whose master the
 * monitor holds. Resolves when the user detaches or the container stops.
 */
export async function attachConsole(c: Container, stdin: NodeJS.ReadStream, stdout: NodeJS.WritableStream): Promise<void> {
  if (c.state().status !== 'running') throw new InvalidStateError(`container ${c.name} is not running`);
  const sock = net.connect({ path: c.paths.consoleSocket });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (err) => reject(new LaunchError(`cannot attach to the console of ${c.name}: ${err.message}`)));
  });
  process.stderr.write(`Connected to the console of ${c.name}. Detach with Ctrl-a q.\r\n`);
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  let sawEscape = false;
  await new Promise<void>((resolve) => {
    const finish = () => {
      stdin.off('data', onInput);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
      sock.destroy();
      resolve();
    };
    const onInput = (data: Buffer) => {
      const forward: number[] = [];
      for (const byte of data) {
        if (sawEscape) {
          sawEscape = false;
          if (byte === DETACH) return finish();
          forward.push(ESCAPE);
          if (byte === ESCAPE) continue;
        } else if (byte === ESCAPE) {
          sawEscape = true;
          continue;
        }
        forward.push(byte);
      }
      if (forward.length) sock.write(Buffer.from(forward));
    };
    stdin.on('data', onInput);
    stdin.on('end', finish);
    sock.on('data', (d) => stdout.write(d));
    sock.on('close', finish);
    sock.on('error', finish);
  });
  process.stderr.write(`\r\nDetached from ${c.name}.\n`);
}
