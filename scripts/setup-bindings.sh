#!/usr/bin/env bash
# Installs what the language bindings need on a fresh Debian machine (run as
# root): the wasm32 target, wasm-bindgen-cli at the exact wasm-bindgen version
# in Cargo.lock, a Python venv with maturin / pytest / mypy / jsonschema, the
# npm packages of both JavaScript packages and of the dashboard (from their
# package-lock.json), and Debian's chromium for the browser tests.
# Idempotent: when everything is
# there already it only checks, in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== setup-bindings: %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "rustup target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# The CLI must match the library exactly: read the version from Cargo.lock.
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
    echo "setup-bindings: wasm-bindgen not found in Cargo.lock" >&2
    exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    log "wasm-bindgen-cli $want (found: ${have:-none})"
    cargo install wasm-bindgen-cli --version "$want" --force
fi

# Python tools live in a venv beside the package; the stamp records which
# requirements it holds so a second run skips pip.
venv=bindings-python/.venv
reqs=bindings-python/requirements-dev.txt
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    log "python venv $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
fi
if ! cmp -s "$reqs" "$venv/.requirements"; then
    log "python packages ($reqs)"
    "$venv/bin/pip" install -q -r "$reqs"
    cp "$reqs" "$venv/.requirements"
fi

for pkg in bindings-node bindings-wasm dashboard; do
    if [ ! -f "$pkg/node_modules/.package-lock.json" ] ||
        [ "$pkg/package-lock.json" -nt "$pkg/node_modules/.package-lock.json" ]; then
        log "npm ci in $pkg"
        (cd "$pkg" && npm ci --no-audit --no-fund)
    fi
done

if [ ! -x /usr/bin/chromium ]; then
    log "chromium (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

log "ready"
