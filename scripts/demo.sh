#!/usr/bin/env bash
# ward demo: a controller on its embedded defaults (SQLite, in-process
# cache) and a local agent watching 2,000 loopback addresses (127.10.0.0/21,
# which the kernel answers), with the dashboard on http://127.0.0.1:8080/.
# Run as root (raw ICMP sockets). Ctrl-C stops both and removes the
# demo's temporary directory; if a process dies, its log is shown and the
# directory is kept. Honours CARGO_TARGET_DIR. Nothing is probed but
# loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: raw ICMP sockets need root; run it as root (e.g. sudo $0)" >&2
  exit 2
fi
command -v cargo >/dev/null || { echo "demo: cargo not found: install a Rust toolchain (1.89 or newer)" >&2; exit 2; }
command -v curl >/dev/null || { echo "demo: curl not found: apt-get install curl" >&2; exit 2; }

HTTP=${WARD_DEMO_HTTP:-127.0.0.1:8080}
GRPC=${WARD_DEMO_GRPC:-127.0.0.1:50051}
RECEIVER_PORT=${WARD_DEMO_RECEIVER_PORT:-9095}
DEVICES=2000

# The same command as a workspace build (`cargo build --release`): the
# binaries it made are reused, nothing is rebuilt.
echo "demo: building ward (release; about 10 minutes the first time, seconds after)…"
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d -t ward-demo-XXXXXX)
keep=0
pids=()
stop() {
  trap - EXIT
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$keep" -eq 1 ]; then
    echo "demo: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
# A process died: show each log (named) and keep them.
crashed() {
  keep=1
  echo >&2
  echo "demo: $1; the logs:" >&2
  for log in "$work"/*.log; do
    echo "---- $log (last 20 lines)" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}
trap 'exit 130' INT TERM
trap stop EXIT

# The first admin, with a generated password (printed once), and a token
# for this script's own calls.
db="sqlite:$work/ward.db"
admin=$("$bin/ward-controller" users add admin --role admin --database "$db" </dev/null)
password=$(printf '%s\n' "$admin" | sed -n 's/^password (shown once): //p')
token=$("$bin/ward-controller" tokens create admin --label demo --database "$db" | grep '^ward_')
auth="authorization: Bearer $token"

# Alerts go to a small local receiver that prints what it gets (without
# one, /readyz says "alerts go nowhere").
receiver=()
if command -v python3 >/dev/null; then
  python3 scripts/demo-receiver.py "$RECEIVER_PORT" >"$work/alerts.log" 2>&1 &
  pids+=($!)
  receiver=(--webhook "http://127.0.0.1:$RECEIVER_PORT/")
else
  echo "demo: python3 not found: alerts go nowhere (/readyz says so)" >&2
fi

# The dashboard asks for a login: admin and the password printed below.
"$bin/ward-controller" run --database "$db" \
  --listen-http "$HTTP" --listen-grpc "$GRPC" --tsdb-spool-dir "$work/tsdb-spool" \
  "${receiver[@]}" >"$work/controller.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://$HTTP/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$HTTP/healthz" >/dev/null || crashed "the controller did not start"

"$bin/ward-controller" agents add demo-agent --site loopback --database "$db" >/dev/null
{
  echo "name,address,site"
  for i in $(seq 1 "$DEVICES"); do
    echo "lo-$i,127.10.$((i / 256)).$((i % 256)),loopback"
  done
} >"$work/devices.csv"
curl -sf -X POST "http://$HTTP/api/v1/devices/import" -H 'content-type: text/csv' -H "$auth" \
  --data-binary "@$work/devices.csv" >/dev/null

"$bin/ward-agent" run --controller "http://$GRPC" --agent-id demo-agent --site loopback \
  --spool-dir "$work/agent-spool" --report-period 5s >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=("$agent_pid")

echo "demo: dashboard on http://$HTTP/   log in as admin, password (shown once): $password"
echo "demo: REST with  -H 'authorization: Bearer $token'  (logs in $work)"
echo "demo: alerts are printed to $work/alerts.log; to see one, stop lo-5 answering:"
echo "        nft add table inet ward_demo; nft add chain inet ward_demo out '{ type filter hook output priority 0; }'"
echo "        nft add rule inet ward_demo out ip daddr 127.10.0.5 icmp type echo-request drop   # then: nft delete table inet ward_demo"
echo "demo: Ctrl-C stops"
# `{"total":2000,"up":1998,"down":2,…}` as a line a person reads.
readable() {
  local json=$1
  get() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$json"; }
  printf '%s devices: %s up, %s down, %s unreachable, %s unknown, %s in maintenance' \
    "$(get total)" "$(get up)" "$(get down)" "$(get unreachable)" "$(get unknown)" "$(get in_maintenance)"
}
while true; do
  if summary=$(curl -sf -H "$auth" "http://$HTTP/api/v1/summary"); then
    line=$(readable "$summary")
  else
    line="the controller is not answering"
  fi
  last_alert=$(tail -n 1 "$work/alerts.log" 2>/dev/null || true)
  printf '\r\033[K%s  %s%s' "$(date +%T)" "$line" "${last_alert:+  | last alert: ${last_alert#* }}"
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      if [ "$pid" = "$agent_pid" ]; then crashed "the agent exited"; else crashed "a demo process exited"; fi
    fi
  done
  sleep 2
done
