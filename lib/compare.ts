/**
 * Order two strings by their UTF-16 code units: for the ASCII we sort (names,
 * ISO dates) the same order as localeCompare, without the ~6 ms the first
 * localeCompare of a process spends loading ICU's collation.
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
