#!/usr/bin/env bash
# Builds the wasm package: the crate for wasm32-unknown-unknown, then
# wasm-bindgen's JavaScript glue and TypeScript types for the browser
# (pkg/web, an ES module) and for Node (pkg/node, CommonJS). package.json's
# `exports` points at both; `npm pack` then makes the publishable tarball.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --manifest-path "$here/Cargo.toml" -p meshplane-wasm --target wasm32-unknown-unknown --release --locked
wasm="$target/wasm32-unknown-unknown/release/meshplane_wasm.wasm"
rm -rf "$here/pkg"
wasm-bindgen --target web --out-dir "$here/pkg/web" "$wasm"
wasm-bindgen --target nodejs --out-dir "$here/pkg/node" "$wasm"
# The web glue is an ES module inside a package whose .js files Node would
# otherwise read as CommonJS (pkg/node's are).
printf '{ "type": "module" }\n' >"$here/pkg/web/package.json"
