#!/usr/bin/env bash
# The main job, for a newcomer: builds and starts the management server with
# its embedded SQLite store, walks through the API once (token, groups, a
# setup key, a policy, the audit log), then keeps the server running until
# Ctrl+C so you can try more calls yourself.
#
#   scripts/demo.sh [DATA_DIR]     (default: ./meshplane-data)
set -euo pipefail
cd "$(dirname "$0")/.."

data=${1:-./meshplane-data}
listen=${MESHPLANE_LISTEN:-127.0.0.1:33073}
api="http://$listen/api"

cargo build --release -q -p meshplane-server
server=${CARGO_TARGET_DIR:-target}/release/meshplane-server

token=$("$server" admin-token --data-dir "$data")
"$server" --data-dir "$data" --listen "$listen" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 100); do
    curl -fs -o /dev/null -H "Authorization: Token $token" "$api/accounts" && break
    sleep 0.1
done

call() { # METHOD PATH [JSON]
    printf '\n$ curl -X %s %s%s\n' "$1" "$api" "$2" >&2
    curl -sS -X "$1" -H "Authorization: Token $token" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$api$2"
    echo
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== meshplane-server is up on $listen (data in $data)"
echo "== your admin token (shown once; keep it): $token"

call GET /accounts >/dev/null
dev=$(call POST /groups '{"name":"developers"}' | field '["id"]')
echo "created group developers: $dev"
call POST /setup-keys "{\"name\":\"laptops\",\"type\":\"reusable\",\"expires_in\":86400,\"auto_groups\":[\"$dev\"],\"usage_limit\":0}"
echo "(the plain key above is shown only now; listing shows it masked:)"
call GET /setup-keys | field '[0]["key"]'
call POST /policies "{\"name\":\"dev-web\",\"enabled\":true,\"rules\":[{\"name\":\"web\",\"enabled\":true,\"action\":\"accept\",\"bidirectional\":true,\"protocol\":\"tcp\",\"ports\":[\"80\",\"443\"],\"sources\":[\"$dev\"],\"destinations\":[\"$dev\"]}]}"
echo "(a bad rule gets the exact reason:)"
call POST /policies "{\"name\":\"bad\",\"enabled\":true,\"rules\":[{\"name\":\"r\",\"enabled\":true,\"action\":\"accept\",\"bidirectional\":true,\"protocol\":\"icmp\",\"ports\":[\"80\"],\"sources\":[\"$dev\"],\"destinations\":[\"$dev\"]}]}"
echo "(the audit log records every change:)"
call GET /events/audit | python3 -c "import json,sys; [print(' ', e['timestamp'], e['activity_code']) for e in json.load(sys.stdin)]"

cat <<MSG

== The server keeps running. Try, in another terminal:
   curl -H "Authorization: Token $token" $api/groups
   curl -H "Authorization: Token $token" $api/policies
== Ctrl+C stops it; the data stays in $data.
MSG
wait $pid
