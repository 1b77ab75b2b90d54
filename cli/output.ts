import fs = require('node:fs');

/**
 * The CLI's output: synchronous writes to fd 1 and 2. A one-shot command
 * never touches process.stdout, whose first use loads Node's stream and net
 * modules (a few ms of every start) and which may lose output at
 * process.exit() when it is a pipe. A reader that went away (`tsvz list |
 * head`) ends the command quietly.
 */
export function print(text: string): void {
  write(1, text);
}

export function printError(text: string): void {
  write(2, text);
}

function write(fd: number, text: string): void {
  const data = Buffer.from(text);
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') process.exit(0);
      // fd 1 shared with a non-blocking reader: wait for room.
      if (code === 'EAGAIN') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      else throw err;
    }
  }
}
