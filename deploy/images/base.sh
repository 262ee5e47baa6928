#!/usr/bin/env bash
# Builds the compose stack's images from Debian's archive alone (no
# registry image is pulled): localhost/ward-debian:12, a minbase root file
# system made with debootstrap, then localhost/ward-postgres:15,
# localhost/ward-victoria-metrics:12, localhost/ward-alertmanager:12 and
# localhost/ward-redis:7 on it with Debian's packages. The base is made once (--rebuild makes it
# again); the others are built every time, from podman's layer cache when
# nothing changed. The controller's image comes from scripts/package.sh.
# Builds run on the host's network (never podman's default 10.88.0.0/16).
set -euo pipefail
cd "$(dirname "$0")"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rebuild=""
[ "${1:-}" = "--rebuild" ] && rebuild=yes

if [ -n "$rebuild" ] || ! podman image exists localhost/ward-debian:12; then
  root=$(mktemp -d /tmp/ward-debian-XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - localhost/ward-debian:12 >/dev/null
fi
for image in postgres:15 victoria-metrics:12 alertmanager:12 redis:7; do
  name=${image%%:*}
  podman build --quiet --network host --format docker -t "localhost/ward-$image" "$name" >/dev/null
done
