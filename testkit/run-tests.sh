#!/usr/bin/env bash
# Runs ward's whole test suite on a Debian 12 machine, as root.
#
# Installs the Debian packages the tests need when they are missing (without
# starting their system services: every test starts its own private servers),
# runs `cargo test` over the workspace (benches included, once each) and the
# packaging test (testkit/package-test.sh) on that build, then fails if any
# namespace, temporary directory or server process the harness creates
# ("ward-test-*") was left behind.
#
# CI=true is honoured by the tests themselves: nothing ever skips, a missing
# service, root or namespace is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(postgresql redis-server victoria-metrics prometheus prometheus-alertmanager slapd exim4-daemon-light chromium systemd nftables iproute2 fping zmap nmap strace debootstrap curl podman podman-compose runc golang-github-containernetworking-plugin-dnsname iptables openssl)

if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: the suite needs root (network namespaces, nftables, raw ICMP sockets, the postgres user); run: sudo $0" >&2
  exit 2
fi
if ! command -v cargo >/dev/null; then
  echo "run-tests: cargo not found: install a Rust toolchain (1.89 or newer, e.g. with rustup)" >&2
  exit 2
fi

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run-tests: installing ${missing[*]}"
  # Keep the packages' own services stopped: tests never use a server that
  # was already running. Any policy-rc.d that existed is put back.
  policy=/usr/sbin/policy-rc.d
  saved_policy=""
  [ -e "$policy" ] && saved_policy=$(mktemp) && cp -p "$policy" "$saved_policy"
  restore_policy() { if [ -n "$saved_policy" ]; then mv "$saved_policy" "$policy"; else rm -f "$policy"; fi; }
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  restore_policy
  trap - EXIT
fi

leftovers() {
  # "[w]ard" keeps these patterns from matching their own command lines.
  {
    ip netns list 2>/dev/null | awk '$1 ~ /^[w]ard-test-/ {print "namespace " $1}'
    find "${TMPDIR:-/tmp}" -maxdepth 1 -name '[w]ard-test-*' -printf 'directory %p\n' 2>/dev/null
    { pgrep -a -f '[w]ard-test-' 2>/dev/null || true; } | sed 's/^/process /'
  } | sort
}
before=$(leftovers)

# The previous release's binaries for the rolling-upgrade test, built (once
# per machine) before the tests rather than beside them.
testkit/previous-release.sh >/dev/null

status=0
cargo test --workspace --all-targets --locked --no-fail-fast "$@" || status=$?
# The Debian packages of that build, installed and purged in a clean root.
testkit/package-test.sh || status=$?

after=$(leftovers)
new=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')
if [ -n "$new" ]; then
  echo "run-tests: the tests left these behind (they must clean up, even on failure):" >&2
  echo "$new" >&2
  status=1
fi
exit "$status"
