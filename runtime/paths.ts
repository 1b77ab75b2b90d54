import path = require('node:path');
import sea = require('node:sea');

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

/**
 * The native helpers: in a checkout where `npm install` builds them
 * (native/build/, two levels above dist/runtime/ and dist/bundle/); in the
 * release artifact (a single executable: scripts/package.js) in lib/ beside it.
 */
export function nativeBinary(name: 'tsvz-monitor' | 'tsvz-exec'): string {
  if (sea.isSea()) return path.join(path.dirname(process.execPath), 'lib', name);
  return path.resolve(__dirname, '..', '..', 'native', 'build', name);
}
