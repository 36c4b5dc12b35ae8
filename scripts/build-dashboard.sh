#!/usr/bin/env bash
# Builds the web dashboard into dashboard/dist (the wasm package first, then
# the TypeScript type check and the esbuild bundle). meshplane-server embeds
# dashboard/dist when it is built after this. Needs npm and the tools
# scripts/setup-bindings.sh installs (wasm-bindgen-cli, the wasm32 target).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bindings-wasm/build.sh
cd dashboard
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
npm run -s typecheck
npm run -s build
