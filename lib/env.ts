/** Later entries override earlier ones with the same NAME (entries are NAME=value). */
export function mergeEnv(base: string[], extra: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of [...base, ...extra]) byName.set(e.slice(0, e.indexOf('=')), e);
  return [...byName.values()];
}
