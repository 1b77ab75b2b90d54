/**
 * The daemon's Prometheus metrics (text format 0.0.4), served on a local
 * address (`--metrics`): calls by method and status, calls in flight,
 * durations, refused callers, connections, bytes streamed.
 */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

type Labels = Record<string, string>;

function key(labels: Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}="${labels[k].replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`).join(',');
}

class Family {
  readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge') {}
  add(labels: Labels, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  set(labels: Labels, value: number): void {
    this.values.set(key(labels), value);
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    for (const [k, v] of this.values) out += `${this.name}${k ? `{${k}}` : ''} ${v}\n`;
    return out;
  }
}

class Histogram {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string) {}
  observe(labels: Labels, seconds: number): void {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]) s.counts[i]++;
    s.sum += seconds;
    s.count++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      BUCKETS.forEach((b, i) => { out += `${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}\n`; });
      out += `${this.name}_bucket{${sep}le="+Inf"} ${s.count}\n${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}\n${this.name}_count${k ? `{${k}}` : ''} ${s.count}\n`;
    }
    return out;
  }
}

export class Metrics {
  readonly requests = new Family('tsvz_daemon_requests_total', 'Calls finished, by method and gRPC status.', 'counter');
  readonly inFlight = new Family('tsvz_daemon_requests_in_flight', 'Calls (operations) in progress, by method.', 'gauge');
  readonly duration = new Histogram('tsvz_daemon_request_duration_seconds', 'Call durations, by method.');
  readonly refused = new Family('tsvz_daemon_refused_total', 'Calls refused before their handler ran, by reason.', 'counter');
  readonly connections = new Family('tsvz_daemon_connections', 'Open TCP connections.', 'gauge');
  readonly streamBytes = new Family('tsvz_daemon_stream_bytes_total', 'Bytes of byte streams, by method and direction.', 'counter');
  readonly trusted = new Family('tsvz_daemon_trusted_clients', 'Clients in the trust store, not revoked.', 'gauge');
  readonly started = new Family('tsvz_daemon_start_time_seconds', 'When the daemon started (Unix time).', 'gauge');
  readonly backupLastSuccess = new Family('tsvz_backup_last_success_time_seconds', 'When a schedule last ran well (Unix time), by schedule.', 'gauge');
  readonly backupDuration = new Family('tsvz_backup_last_duration_seconds', "A schedule's last run's duration, by schedule.", 'gauge');
  readonly backupShipped = new Family('tsvz_backup_shipped_bytes_total', 'Bytes shipped to backup stores, by schedule.', 'counter');
  readonly backupRuns = new Family('tsvz_backup_runs_total', 'Backup runs, by schedule and outcome (ok, failed, skipped).', 'counter');

  render(): string {
    return [this.requests, this.inFlight, this.duration, this.refused, this.connections, this.streamBytes, this.trusted, this.started, this.backupLastSuccess, this.backupDuration, this.backupShipped, this.backupRuns].map((f) => f.render()).join('');
  }
}
