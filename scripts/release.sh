#!/usr/bin/env bash
# Makes a release in target/release-VERSION/ (VERSION from Cargo.toml):
#   ward-agent_VERSION_amd64.deb, ward-controller_VERSION_amd64.deb
#   ward-controller-oci.tar, ward-agent-oci.tar        (podman load -i FILE)
#   ward-VERSION-x86_64-linux-gnu.tar.gz               (the two binaries, linked
#       against glibc 2.36: Debian 12 or newer; units, example configs, docs)
#   SHA256SUMS                                          (sha256sum -c SHA256SUMS)
# from a release build (scripts/package.sh). CHANGELOG.md says what changed
# and how to upgrade.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
out=target/release-$version
name=ward-$version-x86_64-linux-gnu

scripts/package.sh >/dev/null
rm -rf "$out"
mkdir -p "$out/$name/systemd" "$out/$name/doc"
cp "target/package/ward-agent_${version}_amd64.deb" "target/package/ward-controller_${version}_amd64.deb" \
  target/package/ward-controller-oci.tar target/package/ward-agent-oci.tar "$out/"
install -m 755 target/release/ward-agent target/release/ward-controller "$out/$name/"
# Symbols kept (a backtrace names its functions), line tables not: 148 →
# 31 MB for the controller, as in the images (the packages strip both).
strip --strip-debug "$out/$name/ward-agent" "$out/$name/ward-controller"
cp systemd/* "$out/$name/systemd/"
cp README.md LICENSE CHANGELOG.md "$out/$name/"
cp docs/*.md "$out/$name/doc/"
tar -C "$out" --owner=0 --group=0 --sort=name -czf "$out/$name.tar.gz" "$name"
rm -rf "${out:?}/$name"
(cd "$out" && sha256sum -- *.deb *.tar *.tar.gz >SHA256SUMS)
ls -l "$out"
