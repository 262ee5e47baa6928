#!/usr/bin/env bash
# Builds ward's Debian packages into target/package/:
#   ward-agent_VERSION_amd64.deb and ward-controller_VERSION_amd64.deb
# from the workspace (release build), with cargo-deb (installed from
# crates.io when missing). What goes in each is configured in the crate's
# Cargo.toml under [package.metadata.deb].
#
#   scripts/package.sh            release build, then the packages
#   scripts/package.sh --no-build the binaries already in target/debug (the
#                                 test build), for the packaging test only
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
out=target/package
build=(--profile release)
if [ "${1:-}" = "--no-build" ]; then
  build=(--profile dev --no-build)
fi

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi
mkdir -p "$out"
for crate in ward-agent ward-controller; do
  cargo deb --package "$crate" "${build[@]}" --output "$out/" --quiet
done
ls "$out"/*.deb
