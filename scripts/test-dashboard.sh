#!/usr/bin/env bash
# The dashboard's browser test: builds the server and the CLI (embedding
# dashboard/dist, which scripts/build-dashboard.sh made), then drives
# Debian's Chromium through dashboard/test/dashboard.test.mjs against a real
# server, proxy and daemons. Screenshots land in artifacts/dashboard-*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f dashboard/dist/index.html ]; then
    echo "test-dashboard: dashboard/dist is missing; run scripts/build-dashboard.sh first" >&2
    exit 1
fi
cargo build -q -p meshplane-server -p meshplane --locked
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p artifacts
rm -f artifacts/dashboard-*.png
cd dashboard
MESHPLANE_BIN="$target_dir/debug" node --test --test-reporter=spec test/dashboard.test.mjs
