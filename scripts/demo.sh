#!/usr/bin/env bash
# The main job, for a newcomer: builds the web dashboard (when npm is
# there) and the management server with its embedded SQLite store, starts
# it, walks through the API once (token, groups, a
# setup key, a policy, the audit log), then exposes a local web page to the
# "internet" the way `meshplane expose` does: a reverse-proxy peer, a laptop
# peer (userspace WireGuard, no root needed) and a local HTTP server, all on
# this machine. Everything keeps running until Ctrl+C so you can try more.
# Run it again and it starts over: it resets a data directory it made
# itself, and refuses to touch any other non-empty one. The programs' logs
# go to files in the data directory, named at the end.
#
#   scripts/demo.sh [DATA_DIR]     (default: ./meshplane-data)
#
# MESHPLANE_LISTEN, MESHPLANE_PROXY_LISTEN and MESHPLANE_DEMO_WEB_PORT move
# its ports; MESHPLANE_DEMO_EXIT=1 stops everything after the walkthrough
# instead of waiting for Ctrl+C.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${1:-./meshplane-data}
listen=${MESHPLANE_LISTEN:-127.0.0.1:33073}
proxy_listen=${MESHPLANE_PROXY_LISTEN:-127.0.0.1:8081}
web_port=${MESHPLANE_DEMO_WEB_PORT:-8000}
api="http://$listen/api"

# MESHPLANE_DEMO_BIN: a directory holding meshplane-server and meshplane
# already built (the tests use their debug build); otherwise release builds.
if [ -n "${MESHPLANE_DEMO_BIN:-}" ]; then
    bin=$MESHPLANE_DEMO_BIN
else
    # The server embeds the dashboard built before it; without npm it
    # serves a page on / saying how to build one.
    if command -v npm >/dev/null 2>&1 && command -v wasm-bindgen >/dev/null 2>&1; then
        echo "== building the web dashboard"
        scripts/build-dashboard.sh >/dev/null
    fi
    cargo build --release -q -p meshplane-server -p meshplane
    bin=${CARGO_TARGET_DIR:-target}/release
fi
server=$bin/meshplane-server
meshplane=$bin/meshplane

# A directory made by an earlier run is reset; anything else is left alone.
marker=.meshplane-demo
if [ -e "$data/$marker" ] || [ -e "$data/expose.out" ]; then
    echo "== resetting the previous demo's data in $data"
    rm -rf "$data"
elif [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
    echo "$data holds data this demo did not make; pass another directory: scripts/demo.sh DIR" >&2
    exit 1
fi
mkdir -p -m 700 "$data"
touch "$data/$marker"
if curl -s -o /dev/null "http://$listen/health"; then
    echo "something already answers on $listen (an earlier demo still running?); stop it or set MESHPLANE_LISTEN" >&2
    exit 1
fi
token=$("$server" admin-token --data-dir "$data" 2>>"$data/server.log")
"$server" --data-dir "$data" --listen "$listen" 2>>"$data/server.log" &
pid=$!
pids=($pid)
stop_all() {
    # The expose CLI first (it stops its session cleanly), the server last.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; sleep 0.2; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://$listen/health" && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "meshplane-server did not start:" >&2
        cat "$data/server.log" >&2
        exit 1
    fi
    sleep 0.1
done

call() { # METHOD PATH [JSON]
    printf '\n$ curl -X %s %s%s\n' "$1" "$api" "$2" >&2
    curl -sS -X "$1" -H "Authorization: Token $token" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$api$2"
    echo
}
# Prints one field of the JSON answer on stdin; an error answer is shown
# with the server's own message instead.
field() {
    python3 -c "
import json, sys
answer = json.load(sys.stdin)
try:
    print(answer$1)
except (KeyError, IndexError, TypeError):
    message = answer.get('message') if isinstance(answer, dict) else answer
    sys.exit(f'the server refused: {message}')"
}

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

echo
echo "== meshplane expose: a local web page behind the reverse proxy"
proxies=$(call POST /groups '{"name":"proxies"}' | field '["id"]')
proxy_key=$(call POST /setup-keys "{\"name\":\"proxy\",\"type\":\"reusable\",\"expires_in\":86400,\"auto_groups\":[\"$proxies\"],\"usage_limit\":0}" | field '["key"]')
laptop_key=$(call POST /setup-keys "{\"name\":\"laptop\",\"type\":\"reusable\",\"expires_in\":86400,\"auto_groups\":[\"$dev\"],\"usage_limit\":0}" | field '["key"]')
account=$(curl -fsS -H "Authorization: Token $token" "$api/accounts" | field '[0]["id"]')
echo "(an administrator allows the developers group to expose services:)"
# A PUT carries the whole settings object, as in the reference API: read,
# change two fields, send back.
settings=$(curl -fsS -H "Authorization: Token $token" "$api/accounts" | python3 -c "
import json, sys
settings = json.load(sys.stdin)[0]['settings']
settings.update(peer_expose_enabled=True, peer_expose_groups=['$dev'])
print(json.dumps({'settings': settings}))")
call PUT "/accounts/$account" "$settings" >/dev/null
curl -fsS -H "Authorization: Token $token" "$api/accounts" | field '[0]["settings"]["peer_expose_enabled"]'

printf '\n$ meshplane proxy --domain proxy.localhost --listen %s ...\n' "$proxy_listen"
printf '%s\n' "$proxy_key" >"$data/proxy-setup-key"
"$meshplane" proxy --management-url "http://$listen" --setup-key-file "$data/proxy-setup-key" \
    --domain proxy.localhost --listen "$proxy_listen" --state-dir "$data/proxy" 2>"$data/proxy.log" &
pids+=($!)

socket=$data/laptop.sock
printf '\n$ meshplane daemon --netstack &   MESHPLANE_SETUP_KEY=... meshplane up\n'
"$meshplane" daemon --netstack --state-dir "$data/laptop" --socket "$socket" 2>"$data/laptop.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$socket" ] && break; sleep 0.1; done
MESHPLANE_SETUP_KEY=$laptop_key "$meshplane" --socket "$socket" up --management-url "http://$listen"

site=$data/site
mkdir -p "$site"
echo "<h1>Hello from the laptop's local server</h1>" >"$site/index.html"
python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -fs -o /dev/null "http://127.0.0.1:$web_port/" && break; sleep 0.1; done
if ! curl -fs -o /dev/null "http://127.0.0.1:$web_port/"; then
    echo "the local web server did not start on port $web_port (in use? set MESHPLANE_DEMO_WEB_PORT)" >&2
    exit 1
fi

printf '\n$ meshplane expose %s --with-name-prefix demo\n' "$web_port"
"$meshplane" --socket "$socket" expose "$web_port" --with-name-prefix demo >"$data/expose.out" &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'Press Ctrl+C' "$data/expose.out" 2>/dev/null && break; sleep 0.1; done
cat "$data/expose.out"
domain=$(awk '/Domain:/ {print $2}' "$data/expose.out")
# The URL expose printed is what the proxy serves: plain HTTP on its port.
url=$(awk '/URL:/ {print $2}' "$data/expose.out")

printf '\n$ curl %s/\n' "$url"
# The proxy answers 502 until the laptop's tunnel is up: retry quietly,
# and show the last failure only.
for try in $(seq 1 50); do
    quiet=/dev/null
    [ "$try" = 50 ] && quiet=/dev/stderr
    curl -fsS -m 5 --resolve "$domain:${proxy_listen##*:}:127.0.0.1" "$url/" 2>"$quiet" && break
    sleep 0.2
done
echo "(the management API lists the ephemeral service:)"
call GET /reverse-proxies/services | python3 -c "import json,sys; [print(' ', s['domain'], s.get('source'), s.get('source_peer')) for s in json.load(sys.stdin)]"

cat <<MSG

== The dashboard: open http://$listen/ and sign in with the token
   $token

== Everything keeps running. Try, in another terminal:
   curl -H "Authorization: Token $token" $api/groups
   curl $url/        (browsers resolve *.localhost to this machine)
   $meshplane --socket $socket status
   $meshplane --socket $socket expose $web_port --with-pin 123456
     then log in with curl (the cookie jar keeps the session):
     curl -c jar -b jar -L -d 'method=pin&secret=123456&rd=/' \\
          --resolve <DOMAIN>:${proxy_listen##*:}:127.0.0.1 http://<DOMAIN>:${proxy_listen##*:}/.meshplane/login
== Logs: server $data/server.log, proxy $data/proxy.log, laptop daemon $data/laptop.log
== Ctrl+C stops it all (the expose session first); the data stays in $data
   (a new run of this script resets it).
MSG
if [ "${MESHPLANE_DEMO_EXIT:-}" = 1 ]; then
    exit 0
fi
wait $pid
