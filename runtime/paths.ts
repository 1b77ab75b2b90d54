import path = require('node:path');

/** Files inside one container's directory. */
export class ContainerPaths {
  constructor(readonly dir: string) {}
  get config(): string { return path.join(this.dir, 'config.json'); }
  get state(): string { return path.join(this.dir, 'state.json'); }
  get rootfs(): string { return path.join(this.dir, 'rootfs'); }
  get consoleLog(): string { return path.join(this.dir, 'console.log'); }
  get consoleSocket(): string { return path.join(this.dir, 'console.sock'); }
  get exitFile(): string { return path.join(this.dir, 'exit.json'); }
  get monitorLog(): string { return path.join(this.dir, 'monitor.log'); }
}

/** Where the native helpers are built (by `npm install`). */
export function nativeBinary(name: 'tsvz-monitor' | 'tsvz-exec'): string {
  return path.resolve(__dirname, '..', '..', 'native', 'build', name);
}
