/**
 * `tsvz daemon unit`: a systemd unit running this tsvz's daemon on a root
 * and address. Restart=on-failure brings it back after a crash; SIGTERM
 * (systemctl stop) drains calls in flight; its JSON log lines go to the
 * journal as they are.
 */
export function systemdUnit(opts: { node: string; tsvz: string; root: string; listen: string; dataListen?: string; metrics?: string }): string {
  const q = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, '\\$1')}"`);
  const args = [opts.node, opts.tsvz, '--root', opts.root, 'daemon', '--listen', opts.listen, ...(opts.dataListen ? ['--data-listen', opts.dataListen] : []), ...(opts.metrics ? ['--metrics', opts.metrics] : [])];
  return `[Unit]
Description=tsvz host daemon (root ${opts.root})
Documentation=file://${opts.tsvz.replace(/\/bin\/tsvz$/, '')}/docs/daemon.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${args.map(q).join(' ')}
Restart=on-failure
RestartSec=2
# Containers outlive the daemon: only the daemon gets the signal, never the
# monitors and containers it started (they may sit in this unit's cgroup).
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=45
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
}
