#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, the wasm32
# build of the core, the Rust tests (core, conformance, server on SQLite and
# PostgreSQL), the web dashboard (built first, so the server embeds it, and
# driven in Chromium), and the bindings' shared conformance suite with the
# browser test. Needs the tools scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p meshplane-core --all-targets --features sim --locked -- -D warnings

step "meshplane-core builds for wasm32-unknown-unknown"
cargo build -p meshplane-core --target wasm32-unknown-unknown --locked

if [ -z "${MESHPLANE_TEST_POSTGRES_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    step "PostgreSQL for the server's store tests"
    MESHPLANE_TEST_POSTGRES_URL=$(scripts/postgres.sh)
    export MESHPLANE_TEST_POSTGRES_URL
fi

step "dashboard: npm ci + type check + build (before the server is built, which embeds it)"
scripts/build-dashboard.sh

step "cargo test (workspace)"
cargo test --workspace --locked

step "dashboard in Chromium against a real server, proxy and daemons"
scripts/test-dashboard.sh

step "schemathesis against the running server's OpenAPI document"
# `cargo test --workspace` built the server binary (its tests run it), with
# the workspace's features; building it alone would rebuild its dependencies.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
scripts/schemathesis.sh "$target_dir/debug/meshplane-server"

step "systemd units of packaging/"
scripts/check-packaging.sh "$target_dir"

step "cargo test (core with the expose simulation)"
cargo test -p meshplane-core --features sim --locked

step "conformance runner (the count every binding must match)"
cargo run -q -p meshplane-conformance --bin conformance --locked

if [ -x scripts/test-bindings.sh ]; then
    step "bindings: wasm, Python, Node on the shared vectors; the packed packages installed outside the tree; browser page"
    scripts/test-bindings.sh
fi

step "all checks passed"
