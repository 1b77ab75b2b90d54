/**
 * A short, stable, non-cryptographic hash (FNV-1a, 32 bits, 8 hex digits):
 * enough to tell roots and containers apart in host-global names (cgroups,
 * veths), without loading node:crypto on every command.
 */
export function shortHash(text: string): string {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}
