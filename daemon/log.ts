/**
 * The daemon's log: one JSON object per line on stderr (journald keeps each
 * line as one entry; `journalctl -o cat -u tsvz | jq` reads them back).
 * Every line has time, level and event; the rest are the event's fields.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class Logger {
  constructor(private readonly min: Level = 'info', private readonly write: (line: string) => void = (l) => process.stderr.write(l)) {}

  log(level: Level, event: string, fields: Record<string, unknown> = {}): void {
    if (ORDER[level] < ORDER[this.min]) return;
    this.write(JSON.stringify({ time: new Date().toISOString(), level, event, ...fields }) + '\n');
  }

  debug(event: string, fields?: Record<string, unknown>): void { this.log('debug', event, fields); }
  info(event: string, fields?: Record<string, unknown>): void { this.log('info', event, fields); }
  warn(event: string, fields?: Record<string, unknown>): void { this.log('warn', event, fields); }
  error(event: string, fields?: Record<string, unknown>): void { this.log('error', event, fields); }
}
