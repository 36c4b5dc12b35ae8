#!/usr/bin/env bash
# Times the dashboard in Chromium on a large account: starts a server on a
# fresh embedded store, registers N peers over the real gRPC path with
# meshplane-loadgen, then runs dashboard/bench/bench.mjs (peers list load,
# search and scroll; the policy preview), which prints the figures.
#
#   scripts/bench-dashboard.sh [PEERS]     (default 5000)
#
# MESHPLANE_BIN: a directory holding meshplane-server (built after
# dashboard/dist) and meshplane-loadgen; otherwise release builds of both.
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${1:-5000}
if [ ! -f dashboard/dist/index.html ]; then
    echo "bench-dashboard: dashboard/dist is missing; run scripts/build-dashboard.sh first" >&2
    exit 1
fi
if [ -n "${MESHPLANE_BIN:-}" ]; then
    bin=$MESHPLANE_BIN
else
    cargo build --release -q -p meshplane-server -p meshplane-loadgen --locked
    bin=$(cargo metadata --format-version 1 --no-deps --locked |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release
fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
token=$("$bin/meshplane-server" admin-token --data-dir "$dir/data" 2>/dev/null)
"$bin/meshplane-server" --data-dir "$dir/data" --listen "127.0.0.1:$port" \
    --max-connections-per-address 100000 --log warn 2>"$dir/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "$url/health" && break; sleep 0.1; done
echo "== registering $peers peers with meshplane-loadgen"
# Only the registrations matter here: the streams the harness opens after
# them may time out on a busy machine without changing the account.
if ! "$bin/meshplane-loadgen" --peers "$peers" --policy-changes 1 --server-url "$url" --token "$token" >"$dir/loadgen.log" 2>&1; then
    echo "(meshplane-loadgen stopped after registering: $(tail -n 1 "$dir/loadgen.log"))"
fi
grep -m 1 '^register' "$dir/loadgen.log" || true
echo "== the dashboard in Chromium"
(cd dashboard && node bench/bench.mjs --server-url "$url" --token "$token" --peers "$peers")
