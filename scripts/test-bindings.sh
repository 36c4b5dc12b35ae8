#!/usr/bin/env bash
# Builds the three bindings (wasm, Python, Node), runs each one's conformance
# runner over every file in conformance/vectors/, checks that each passed
# exactly as many vectors as the Rust runner with none failed, runs the
# Python stub check and the bindings' own API tests, then
# scripts/test-packages.sh on the same builds (the packed packages installed
# outside the tree; the demo page in Chromium, screenshot in artifacts/).
# Exits non-zero on any failure. Needs what scripts/setup-bindings.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
logs=$root/artifacts/bindings
mkdir -p "$logs"

step() { printf '\n== bindings: %s\n' "$*"; }

# The last `conformance: N passed, M failed` line of a log.
count_of() { grep -E '^conformance: [0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1 || true; }

step "Rust conformance count"
cargo run -q -p meshplane-conformance --bin conformance --locked | tee "$logs/rust.log"
want=$(count_of "$logs/rust.log")
if [ -z "$want" ]; then
    echo "bindings: the Rust runner printed no count" >&2
    exit 1
fi

step "build: wasm (web + node)"
bash bindings-wasm/build.sh

step "build: napi addon"
(cd bindings-node && npm run -s build) # napi build --platform --release --strip

step "build: Python wheel, installed with pip"
# shellcheck disable=SC1091
source bindings-python/.venv/bin/activate
rm -rf bindings-python/dist
(cd bindings-python && maturin build --release --locked -o dist)
pip install -q --force-reinstall --no-deps bindings-python/dist/meshplane-*.whl

status=0
run_runner() { # name, command...
    local name=$1
    shift
    step "conformance: $name"
    if ! "$@" >"$logs/$name.log" 2>&1; then
        status=1
        tail -n 60 "$logs/$name.log"
    fi
    local got
    got=$(count_of "$logs/$name.log")
    echo "$name: ${got:-no count printed} (rust: $want)"
    if [ "$got" != "$want" ]; then
        echo "bindings: $name does not match the Rust runner" >&2
        status=1
    fi
}

run_runner python python -m pytest -q -p no:cacheprovider bindings-python/tests/test_conformance.py
run_runner napi node bindings-node/test/conformance.test.mjs
run_runner wasm node bindings-wasm/test/conformance.test.mjs

step "Python: API tests, stubtest, mypy --strict"
python -m pytest -q -p no:cacheprovider bindings-python/tests/test_api.py
(cd "$logs" && python -m mypy.stubtest meshplane --allowlist "$root/bindings-python/stubtest-allowlist.txt")
(cd bindings-python && mypy --strict --cache-dir=/dev/null tests python/meshplane ../scripts/packages/use.py)

step "Node and wasm: API tests, TypeScript declarations type-check"
node --test bindings-node/test/api.test.mjs
node --test bindings-wasm/test/api.test.mjs
(cd bindings-node && npm run -s typecheck)

if [ "$status" -ne 0 ]; then
    echo "bindings: conformance failures (logs in $logs)" >&2
    exit 1
fi
step "all bindings pass $want"

# The packages as published, installed outside the tree, and the demo page
# (built from the wasm package) in headless Chromium.
scripts/test-packages.sh
