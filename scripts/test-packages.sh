#!/usr/bin/env bash
# Checks each package in the form it is published: `npm pack` of @meshplane/wasm,
# @meshplane/node and its linux-x64-gnu package, the wheel `maturin build`
# made, each installed into a fresh project in a temporary directory outside
# the source tree (npm install of the tarballs, offline; pip install of the
# wheel into a fresh venv of the oldest and newest supported CPython found,
# and of python3) and used from there (scripts/packages/use.*). Then tsc
# --strict over the installed packages' declarations with the vectors'
# accounts, policies and maps, and the demo page assembled from the wasm
# tarball in headless Chromium.
#
# Reuses the builds scripts/test-bindings.sh made (bindings-wasm/pkg, the
# napi addon, bindings-python/dist); builds whichever is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/meshplane-packages.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n== packages: %s\n' "$*"; }
fail() {
    echo "packages: $*" >&2
    exit 1
}

step "builds (reused when present)"
[ -f bindings-wasm/pkg/web/meshplane_wasm_bg.wasm ] || bash bindings-wasm/build.sh
compgen -G 'bindings-node/meshplane.*.node' >/dev/null || (cd bindings-node && npm run -s build)
if ! compgen -G 'bindings-python/dist/meshplane-*.whl' >/dev/null; then
    (cd bindings-python && .venv/bin/maturin build --release --locked -o dist)
fi
wheels=(bindings-python/dist/meshplane-*.whl)
[ "${#wheels[@]}" = 1 ] || fail "expected one wheel in bindings-python/dist, found ${#wheels[*]}"
wheel=$root/${wheels[0]}

step "npm pack"
(cd bindings-node && npx napi artifacts --output-dir . --npm-dir npm >/dev/null)
pack() { (cd "$1" && npm pack --silent --pack-destination "$work" | tail -n 1); }
wasm_tgz=$work/$(pack bindings-wasm)
# The main Node package as `napi prepublish` leaves it at publish time: its
# manifest pins each napi target's platform package in optionalDependencies.
# The checked-in manifest has no pin, since `npm ci` in bindings-node would
# need the platform package in the lock file and from the registry.
node_stage=$work/node-stage
mkdir -p "$node_stage"
cp bindings-node/index.js bindings-node/index.d.ts bindings-node/README.md "$node_stage/"
node -e '
const fs = require("fs");
const [src, dst] = process.argv.slice(1);
const p = JSON.parse(fs.readFileSync(src, "utf8"));
p.optionalDependencies = {};
for (const dir of fs.readdirSync("bindings-node/npm"))
  p.optionalDependencies[`${p.name}-${dir}`] = p.version;
fs.writeFileSync(dst, JSON.stringify(p, null, 2) + "\n");
' bindings-node/package.json "$node_stage/package.json"
node_tgz=$work/$(pack "$node_stage")
platform_tgz=$work/$(pack bindings-node/npm/linux-x64-gnu)
for t in "$wasm_tgz" "$node_tgz" "$platform_tgz" "$wheel"; do
    printf '%8d KiB  %s\n' $(($(stat -c %s "$t") / 1024)) "$(basename "$t")"
done

# One version everywhere: Cargo's, the wheel's and each package.json's.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
node -e '
const [version, ...files] = process.argv.slice(1);
const fs = require("fs");
for (const f of files) {
  const p = JSON.parse(fs.readFileSync(f, "utf8"));
  if (p.version !== version) throw new Error(`${f}: version ${p.version}, Cargo has ${version}`);
}' "$version" bindings-wasm/package.json bindings-node/package.json bindings-node/npm/*/package.json
case $(basename "$wheel") in
meshplane-"$version"-*) ;;
*) fail "wheel $(basename "$wheel") is not version $version" ;;
esac

step "Node: a fresh project installs the tarballs and uses them"
app=$work/node-app
mkdir -p "$app"
printf '{ "name": "app", "private": true, "type": "module" }\n' >"$app/package.json"
# --offline: everything comes from the tarballs; a registry lookup (of the
# platform package, say) would fail here rather than fetch someone else's.
(cd "$app" && npm install --offline --no-audit --no-fund --loglevel=error "$node_tgz" "$platform_tgz" "$wasm_tgz")
cp scripts/packages/use.mjs "$app/"
node "$app/use.mjs" @meshplane/node "$root/conformance/vectors"
node "$app/use.mjs" @meshplane/wasm "$root/conformance/vectors"

step "TypeScript: the installed declarations hold the vectors' accounts, policies and maps"
tsc=$root/bindings-node/node_modules/.bin/tsc
checks=()
for entry in @meshplane/node @meshplane/wasm @meshplane/wasm/web; do
    out=vectors-$(basename "$entry").ts
    node bindings-wasm/test/vector-types.mjs "$app/$out" "$entry"
    checks+=("$out")
done
# `dom`: the web entry's init() takes fetch's and WebAssembly's types.
(cd "$app" && "$tsc" --noEmit --strict --module nodenext --moduleResolution nodenext --target es2022 \
    --lib esnext,dom "${checks[@]}" 2>&1) ||
    fail "the declarations do not match the vectors"

step "Python: the wheel in fresh venvs"
# The oldest and newest CPython requires-python admits, where the machine
# has them (pyenv's or on PATH), and the default python3.
pythons=(python3)
for v in 3.9 3.13; do
    for p in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v".*/bin/"python$v"; do
        if "$p" -c 'import sys' 2>/dev/null; then
            pythons+=("$p")
            break
        fi
    done
done
for py in "${pythons[@]}"; do
    venv=$work/venv-$(basename "$py")
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$wheel"
    (cd "$work" && "$venv/bin/python" "$root/scripts/packages/use.py" "$root/conformance/vectors")
done

step "browser: the demo page assembled from the wasm tarball"
bash bindings-wasm/demo/build.sh "$work/demo" "$wasm_tgz"
node bindings-wasm/test/browser.test.mjs "$work/demo"

step "every package installs from its built artifact and works"
