#!/usr/bin/env bash
# The Debian packages as an operator installs them, in a clean Debian 12
# root file system (debootstrap, minbase with systemd), run by run-tests.sh
# after the cargo tests (it packages their build: scripts/package.sh
# --no-build):
#
# - `apt-get install ./ward-agent_*.deb ./ward-controller_*.deb` succeeds;
#   both units are enabled and pass `systemd-analyze verify` there;
# - the installed binaries run; the controller, started from the installed
#   config with the installed binary (as its unit would: credentials from
#   /etc/ward), answers /readyz once `certs init` made its certificates;
# - `apt-get purge` leaves nothing behind but the certificates the operator
#   made.
#
# The root file system is made once and kept as a tarball in
# /var/cache/ward-test (made again when missing). Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."

# minbase with what a Debian 12 server has anyway and the packages depend
# on (systemd, procps): the test installs from local files, without apt
# lists.
include=systemd,procps
cache=/var/cache/ward-test/bookworm-minbase-${include//,/-}.tar.gz
mirror=http://deb.debian.org/debian
checks=0
say() { echo "package-test: $*"; }
fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
pass() { checks=$((checks + 1)); say "ok: $*"; }

root=$(mktemp -d /tmp/ward-test-packages-XXXXXX)
controller_pid=""
cleanup() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  mountpoint -q "$root/proc" && umount "$root/proc"
  rm -rf "$root"
}
trap cleanup EXIT

if [ ! -s "$cache" ] || ! gzip -t "$cache" 2>/dev/null; then
  say "making a Debian 12 root file system (once; kept in $cache)"
  fresh=$(mktemp -d /tmp/ward-test-debootstrap-XXXXXX)
  debootstrap --variant=minbase --include="$include" bookworm "$fresh" "$mirror" >/dev/null
  mkdir -p "$(dirname "$cache")"
  tar -C "$fresh" -czf "$cache.partial" . && mv "$cache.partial" "$cache"
  rm -rf "$fresh"
fi
tar -C "$root" -xzf "$cache"
mount -t proc proc "$root/proc"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
# What is there before, less what apt and dpkg keep for themselves.
files() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./tmp -o -path ./run -o -path ./dev \
    -o -path ./var/lib/dpkg -o -path ./var/lib/apt -o -path ./var/cache -o -path ./var/log \) -prune \
    -o -print | sort)
}
before=$(files)

scripts/package.sh --no-build --no-images >/dev/null || fail "scripts/package.sh --no-build --no-images"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
for package in ward-agent ward-controller; do
  [ -f "target/package/${package}_${version}_amd64.deb" ] || fail "target/package/${package}_${version}_amd64.deb was not made"
  cp "target/package/${package}_${version}_amd64.deb" "$root/tmp/"
done
pass "scripts/package.sh made ward-agent_${version}_amd64.deb and ward-controller_${version}_amd64.deb"

chmod 644 "$root"/tmp/*.deb
in_root apt-get install -y -qq --no-install-recommends "/tmp/ward-agent_${version}_amd64.deb" \
  "/tmp/ward-controller_${version}_amd64.deb" >"$root/tmp/apt.log" 2>&1 ||
  fail "apt-get install: $(cat "$root/tmp/apt.log")"
pass "apt-get install of both packages"

for unit in ward-agent ward-controller; do
  state=$(in_root systemctl is-enabled "$unit.service" || true)
  [ "$state" = enabled ] || fail "$unit.service is $state after install, not enabled"
done
pass "both units enabled (not started: each waits for its key)"

verify=$(in_root systemd-analyze verify /lib/systemd/system/ward-agent.service \
  /lib/systemd/system/ward-controller.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
pass "systemd-analyze verify passes in the installed system"

conffiles=$(in_root dpkg-query -W -f='${Conffiles}\n' ward-agent ward-controller)
for conffile in /etc/ward/agent.toml /etc/ward/controller.toml /etc/ward/database-password; do
  grep -q "$conffile" <<<"$conffiles" || fail "$conffile is not a conffile: $conffiles"
done
in_root ward-agent --version >/dev/null || fail "ward-agent does not run"
in_root ward-agent probe --count 1 127.0.0.1 >/dev/null 2>&1 || fail "ward-agent probe 127.0.0.1"
pass "conffiles under /etc/ward; the installed agent probes loopback"

made=$(in_root ward-controller certs init --dir /etc/ward --name 127.0.0.1 2>/dev/null) ||
  fail "ward-controller certs init --dir /etc/ward"
mkdir -p "$root/var/lib/ward-controller"
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
grpc=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot "$root" env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY=/etc/ward \
  sh -c "cd /var/lib/ward-controller && exec ward-controller run --config /etc/ward/controller.toml \
  --listen-http 127.0.0.1:$http --listen-grpc 127.0.0.1:$grpc" >"$root/tmp/controller.log" 2>&1 &
controller_pid=$!
ready=""
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$root/etc/ward/ca.pem" \
    "https://127.0.0.1:$http/readyz" || true)
  [ "$code" = 200 ] && ready=yes && break
  sleep 0.2
done
[ -n "$ready" ] || fail "the installed controller never answered /readyz 200: $(cat "$root/tmp/controller.log")"
kill "$controller_pid" && wait "$controller_pid" 2>/dev/null || true
controller_pid=""
pass "the installed controller, from the installed config, answers /readyz"

in_root apt-get purge -y -qq ward-agent ward-controller >"$root/tmp/apt.log" 2>&1 ||
  fail "apt-get purge: $(cat "$root/tmp/apt.log")"
left=$(comm -13 <(echo "$before") <(files))
expected=$( (echo ./etc/ward; for path in $made; do echo ".$path"; done) | sort)
[ "$left" = "$expected" ] || fail "after purge, left behind:
$(comm -23 <(echo "$left") <(echo "$expected"))
(the operator's certificates $made may stay)"
pass "apt-get purge leaves nothing but the certificates the operator made"

say "$checks checks passed"
