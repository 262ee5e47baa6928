#!/usr/bin/env bash
# Builds the container image of ward-NAME (controller or agent) from BINARY:
# the binary and the libraries it links (as ldd finds them on this Debian
# 12 host), the CA roots for outbound TLS, a passwd naming uid 10001, on
# nothing (no registry image); deploy/images/NAME.Containerfile says the
# rest. Tags it localhost/ward-NAME:TAG and, given OUT, saves it there as
# an OCI archive.
#
#   scripts/image.sh NAME BINARY TAG [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 binary=$2 tag=$3 out=${4:-}
command -v podman >/dev/null || { echo "image: podman is needed (apt install podman)" >&2; exit 2; }

context=$(mktemp -d /tmp/ward-image-XXXXXX)
trap 'rm -rf "$context"' EXIT
rootfs=$context/rootfs
install -D -m 755 "$binary" "$rootfs/usr/bin/ward-$name"
# Symbols kept (a backtrace names its functions), line tables not.
strip --strip-debug "$rootfs/usr/bin/ward-$name"
for library in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  install -D -m 755 "$library" "$rootfs$library"
done
install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nward:x:10001:10001:ward:/var/lib/ward:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nward:x:10001:\n' >"$rootfs/etc/group"
mkdir -p "$rootfs/etc/ward" "$rootfs/tmp" "$rootfs/var/lib/ward" "$context/state"
chmod 1777 "$rootfs/tmp"
podman build --quiet --format docker --network none -f "deploy/images/$name.Containerfile" \
  -t "localhost/ward-$name:$tag" "$context" >/dev/null
if [ -n "$out" ]; then
  rm -f "$out"
  podman save --quiet --format oci-archive -o "$out" "localhost/ward-$name:$tag"
fi
