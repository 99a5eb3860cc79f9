#!/usr/bin/env bash
# The systemd unit examples in packaging/systemd: systemd-analyze verify
# checks their syntax, directives and the ExecStart binary (the moat built
# here stands in for /usr/bin/moat), and the offline security analysis
# keeps the hardening from eroding. The units' behaviour (socket
# activation, sd_notify) is tested in e2e/systemd_test.go with
# systemd-socket-activate and a notify socket.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v systemd-socket-activate >/dev/null 2>&1; then
  echo "== installing systemd (systemd-analyze, systemd-socket-activate)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/moat" .
sed "s#/usr/bin/moat#$work/moat#" packaging/systemd/moat.service >"$work/moat.service"
cp packaging/systemd/moat.socket "$work/moat.socket"

# verify exits 0 on warnings; any output at all is a finding here.
out=$(systemd-analyze verify "$work/moat.socket" "$work/moat.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify:"; echo "$out"; exit 1
fi

# The example's exposure score is 1.4 ("OK") on systemd 252; fail above 2.0
# so that a dropped hardening line is noticed.
systemd-analyze security --offline=yes --threshold=20 "$work/moat.service" >"$work/security.txt" 2>&1 || {
  cat "$work/security.txt"; echo "moat.service: exposure above 2.0"; exit 1
}
tail -1 "$work/security.txt"

# The ExecStart= line must be a command this moat accepts: run it with
# --dry-run, development certificates standing in for the credentials.
"$work/moat" certs generate --dir "$work/creds" --hosts localhost >/dev/null
cp "$work/creds/server.crt" "$work/creds/tls.crt"
cp "$work/creds/server.key" "$work/creds/tls.key"
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' packaging/systemd/moat.service | sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ')
exec_start=${exec_start//'${CREDENTIALS_DIRECTORY}'/$work/creds}
exec_start=${exec_start//\/usr\/bin\/moat/$work/moat}
# shellcheck disable=SC2086 # the unit's words, split as systemd splits them
$exec_start --dry-run 2>&1 | tee "$work/dry-run.txt" | tail -1
grep -q "configuration is valid" "$work/dry-run.txt"

echo "ci-systemd: unit files verified"
