#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as
# root). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== setup: %s\n' "$*"; }

log "rust components and targets"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The data plane's namespace test uses the kernel's ping and ip(8).
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The NAT scenarios make home routers with iptables.
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# A routing peer masquerades through nft's JSON interface (and the routes
# namespace test needs it).
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "apt packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -x scripts/setup-bindings.sh ]; then
    log "bindings toolchain"
    scripts/setup-bindings.sh
fi

log "done"
