#!/usr/bin/env bash
# Runs schemathesis against a running meshplane-server and its served
# OpenAPI document (GET /api/openapi.json). Builds nothing: pass the server
# binary, or it uses target/debug/meshplane-server
# (`cargo build -p meshplane-server --locked`). schemathesis comes from the
# venv scripts/setup-bindings.sh creates (bindings-python/requirements-dev.txt).
#
# The server starts on a free loopback port with a fresh SQLite data dir and
# an owner token from `admin-token`. The run is bounded and reproducible: a
# fixed seed, a fixed number of examples per operation (25, or
# $SCHEMATHESIS_EXAMPLES), one worker; about 30 s on 2 cores.
#
# Phases: examples, coverage, fuzzing and stateful (the links schemathesis
# infers between operations reach real ids).
#
# Checks: all of schemathesis's, among them not_a_server_error (no 5xx for
# any input), response_schema_conformance (every response matches the
# document), status_code_conformance, content_type_conformance, ignored_auth
# (operations refuse a missing or wrong token) and use_after_free (a deleted
# resource stays gone). Three are left out:
#   negative_data_rejection  the server decodes bodies as the reference's Go
#       server does: `null` for an optional list or string means "not given"
#       and a missing list defaults to empty (e.g. PUT /api/dns/settings {}),
#       where the schema marks the field non-nullable or required.
#   positive_data_acceptance the schemas do not express the SEMANTICS.md
#       rules (unique names, ids that must exist, CIDR/domain formats, the
#       `Content-Type` the server requires), so schema-valid bodies are
#       rightly refused with 400/404/422.
#   ensure_resource_availability  the fixed ids below override the ids that
#       stateful links carry, so after "POST /api/groups" the next step may
#       use the seeded group (perhaps deleted by then) and the check reads
#       its 404 as "the resource just created is missing" (seen with seed 11
#       and 50 examples: the 404 ids were the seeded ones, not the created
#       ones). POST-then-GET is covered by server/tests/api.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/meshplane-server}
st=${SCHEMATHESIS:-bindings-python/.venv/bin/st}
if [ ! -x "$bin" ]; then
    echo "schemathesis.sh: no server binary at $bin (cargo build -p meshplane-server)" >&2
    exit 1
fi
if [ ! -x "$st" ]; then
    echo "schemathesis.sh: no schemathesis at $st (run scripts/setup-bindings.sh)" >&2
    exit 1
fi

st=$(realpath "$st")
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server reads these; this run passes everything as flags.
unset MESHPLANE_CONFIG MESHPLANE_DATA_DIR MESHPLANE_STORE MESHPLANE_LISTEN MESHPLANE_LOG

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
token=$("$bin" admin-token --data-dir "$work/data")
"$bin" --data-dir "$work/data" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!

for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/api/openapi.json"; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: the server exited:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.1
done

# One resource of each kind, so operations on an item reach real ids and
# not only 404s: schemathesis uses these values for the path parameters.
api() {
    curl -fsS -X "$1" -H "Authorization: Token $token" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$base/api/$2"
}
id_of() { python3 -c 'import json, sys; d = json.load(sys.stdin); print((d[0] if isinstance(d, list) else d)[sys.argv[1]])' "${1:-id}"; }
account=$(api GET accounts | id_of)
policy=$(api GET policies | id_of)
group=$(api POST groups '{"name": "st-group"}' | id_of)
key=$(api POST setup-keys '{"name": "st-key", "type": "reusable", "expires_in": 86400, "auto_groups": [], "usage_limit": 0}' | id_of)
check=$(api POST posture-checks '{"name": "st-check", "checks": {"nb_version_check": {"min_version": "0.25.0"}}}' | id_of)
network=$(api POST networks '{"name": "st-network"}' | id_of)
resource=$(api POST "networks/$network/resources" "{\"name\": \"st-resource\", \"address\": \"10.0.0.0/24\", \"enabled\": true, \"groups\": [\"$group\"]}" | id_of)
router=$(api POST "networks/$network/routers" "{\"peer_groups\": [\"$group\"], \"metric\": 100, \"masquerade\": true, \"enabled\": true}" | id_of)
route=$(api POST routes "{\"description\": \"\", \"network_id\": \"st-route\", \"enabled\": true, \"peer_groups\": [\"$group\"], \"network\": \"10.1.0.0/24\", \"metric\": 100, \"masquerade\": true, \"keep_route\": false, \"groups\": [\"$group\"]}" | id_of)
nsgroup=$(api POST dns/nameservers "{\"name\": \"st-ns\", \"description\": \"\", \"nameservers\": [{\"ip\": \"1.1.1.1\", \"ns_type\": \"udp\", \"port\": 53}], \"enabled\": true, \"groups\": [\"$group\"], \"primary\": true, \"domains\": [], \"search_domains_enabled\": false}" | id_of)
# A service user of its own, so deleting or rejecting it (and its token)
# leaves the owner and the token of this run alone.
user=$(api POST users '{"name": "st-user", "role": "user", "is_service_user": true, "auto_groups": []}' | id_of)
user_token=$(api POST "users/$user/tokens" '{"name": "st-token", "expires_in": 30}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["personal_access_token"]["id"])')
cat >"$work/schemathesis.toml" <<TOML
[parameters]
"path.accountId" = "$account"
"path.policyId" = "$policy"
"path.groupId" = "$group"
"path.keyId" = "$key"
"path.postureCheckId" = "$check"
"path.networkId" = "$network"
"path.resourceId" = "$resource"
"path.routerId" = "$router"
"path.routeId" = "$route"
"path.nsgroupId" = "$nsgroup"
"path.userId" = "$user"
"path.tokenId" = "$user_token"
TOML

# Excluded operations (each with the reason):
#   DELETE /api/accounts/{accountId}  deletes the account the run works in.
# From the temp dir: schemathesis keeps a cache of past crashes in
# .schemathesis/ under its working directory, which would make runs differ.
status=0
cd "$work"
"$st" --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Token $token" \
    --checks all \
    --exclude-checks negative_data_rejection,positive_data_acceptance,ensure_resource_availability \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed 20260101 \
    --workers 1 \
    --request-timeout 10 \
    --exclude-name 'DELETE /api/accounts/{accountId}' \
    || status=$?

if [ "$status" -ne 0 ]; then
    echo "schemathesis.sh: failures (server log follows)" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
