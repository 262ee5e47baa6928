#!/usr/bin/env bash
# Builds ward's packages into target/package/:
#   ward-agent_VERSION_amd64.deb, ward-controller_VERSION_amd64.deb
#     (cargo-deb, installed from crates.io when missing; what goes in each
#     is configured in the crate's Cargo.toml under [package.metadata.deb])
#   ward-controller-oci.tar, ward-agent-oci.tar
#     (container images as OCI archives, built with podman from nothing but
#     the binaries and the Debian 12 libraries they link: no registry image;
#     also left in podman's store as localhost/ward-controller:VERSION and
#     localhost/ward-agent:VERSION)
#
#   scripts/package.sh             release build, then all of them
#   scripts/package.sh --no-build  the binaries already in target/debug (the
#                                  test build), for the packaging tests only
#   --no-images                    the Debian packages only
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
out=target/package
build=(--profile release)
binaries=target/release
images=yes
for argument in "$@"; do
  case "$argument" in
    --no-build) build=(--profile dev --no-build); binaries=target/debug ;;
    --no-images) images="" ;;
    *) echo "package: unknown argument $argument" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi
mkdir -p "$out"
for crate in ward-agent ward-controller; do
  # Stripped as Debian's own binaries are (the controller's 148 → 25 MB).
  cargo deb --package "$crate" "${build[@]}" --strip --output "$out/" --quiet
done

if [ -n "$images" ]; then
  for name in controller agent; do
    scripts/image.sh "$name" "$binaries/ward-$name" "$version" "$out/ward-$name-oci.tar"
  done
fi
ls "$out/ward-agent_${version}_amd64.deb" "$out/ward-controller_${version}_amd64.deb"
if [ -n "$images" ]; then
  ls "$out/ward-controller-oci.tar" "$out/ward-agent-oci.tar"
fi
