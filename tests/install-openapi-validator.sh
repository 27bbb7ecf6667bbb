#!/usr/bin/env bash
# Installs the pinned openapi-spec-validator (PyPI) into the project's target
# directory, if it is not there yet, and prints the directory to put on
# PYTHONPATH. The OpenAPI test (examples/tests/http_openapi.rs) calls it to
# check `GET /v1/openapi.json` against the OpenAPI 3 specification.
#
# Safe to run from parallel test binaries: installs are serialised by
# flock(1) and land by an atomic rename of a finished directory.
#
# Usage: tests/install-openapi-validator.sh   (installs under $CARGO_TARGET_DIR or ./target)
set -euo pipefail

VERSION=0.9.0
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
dir="$target/openapi-spec-validator-$VERSION"

installed() {
    [ -d "$dir" ] && PYTHONPATH="$dir" python3 -c \
        "import importlib.metadata as m, sys; sys.exit(m.version('openapi-spec-validator') != '$VERSION')" \
        2>/dev/null
}

if ! installed; then
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    if command -v flock >/dev/null; then flock 9; fi
    if ! installed; then
        rm -rf "$dir"
        staging="$(mktemp -d "$dir.staging.XXXXXX")"
        trap 'rm -rf "$staging"' EXIT
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --target "$staging" "openapi-spec-validator==$VERSION" >&2
        mv "$staging" "$dir"
        trap - EXIT
    fi
    if ! installed; then
        echo "install-openapi-validator: $dir has no openapi-spec-validator $VERSION" >&2
        exit 1
    fi
fi
echo "$dir"
