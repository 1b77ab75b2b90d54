import type * as Koffi from 'koffi';

let loaded: typeof Koffi | undefined;

/**
 * koffi, loaded on first use, once per process. koffi's entry point spends
 * ~5 ms of every CLI start working out the host's libc (it parses node's
 * ELF header) before it loads its prebuilt native module, which is the same
 * API. On glibc that module (in the @koromix/koffi-linux-<arch> package
 * koffi pins and npm installs with it) is loaded directly; if that fails
 * (musl, another layout) koffi's own entry point decides.
 */
export function loadKoffi(): typeof Koffi {
  if (!loaded) {
    const native = `@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`;
    try {
       
      loaded = require(native) as typeof Koffi;
    } catch {
       
      loaded = require('koffi') as typeof Koffi;
    }
  }
  return loaded;
}

/**
 * Functions of libc, bound by `bind` on the first call of the returned
 * getter (and koffi loaded then), so a command that never calls them does
 * not pay for koffi.
 */
export function lazyLibc<T>(bind: (lib: Koffi.LibraryHandle, koffi: typeof Koffi) => T): () => T {
  let bound: T | undefined;
  return () => {
    if (bound === undefined) {
      const koffi = loadKoffi();
      bound = bind(koffi.load('libc.so.6'), koffi);
    }
    return bound;
  };
}
