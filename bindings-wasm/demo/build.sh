#!/usr/bin/env bash
# Assembles the demo site from the published form of the package: copies the
# page into OUT and installs the @meshplane/wasm tarball there with npm, so
# the page loads the package exactly as a user's project would get it.
#
# Usage: demo/build.sh OUT [TARBALL]   (default TARBALL: `npm pack` of
# bindings-wasm, which needs build.sh to have run)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out=${1:?usage: demo/build.sh OUT [TARBALL]}
tarball=${2:-}
if [ -z "$tarball" ]; then
    packed=$(mktemp -d)
    tarball="$packed/$(cd "$here/.." && npm pack --silent --pack-destination "$packed" | tail -n 1)"
fi
tarball="$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")"
mkdir -p "$out"
cp "$here/index.html" "$here/demo.js" "$here/sample-account.json" "$out/"
printf '{ "name": "meshplane-demo", "private": true }\n' >"$out/package.json"
(cd "$out" && npm install --offline --no-audit --no-fund --loglevel=error "$tarball")
echo "demo: $out (open index.html through any static server)"
