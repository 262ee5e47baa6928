#!/usr/bin/env bash
# Prints the directory holding the previous release's ward-controller and
# ward-agent (debug builds), building them once from git history into
# /var/cache/ward-test/previous-COMMIT/ (about 4 minutes on 2 cores). The
# rolling-upgrade test (e2e/tests/rolling_upgrade.rs) runs them beside this
# build's. run-tests.sh calls it before the tests, so the build does not run
# beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

# ward 0.1.0: the last commit before agent-link protocol versions.
PREVIOUS=44d283bcb5d7cce833cc87d593f2a850527423a3
cache=/var/cache/ward-test/previous-$PREVIOUS
if [ ! -x "$cache/ward-controller" ] || [ ! -x "$cache/ward-agent" ]; then
  tree=$(mktemp -d /tmp/ward-test-previous-XXXXXX)
  trap 'rm -rf "$tree"' EXIT
  git archive "$PREVIOUS" | tar -x -C "$tree"
  echo "previous-release: building $PREVIOUS (once; kept in $cache)" >&2
  CARGO_TARGET_DIR="$tree/target" CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only \
    cargo build --quiet --locked --manifest-path "$tree/Cargo.toml" -p ward-controller -p ward-agent >&2
  mkdir -p "$cache.partial"
  cp "$tree/target/debug/ward-controller" "$tree/target/debug/ward-agent" "$cache.partial/"
  rm -rf "$cache" && mv "$cache.partial" "$cache"
fi
echo "$cache"
