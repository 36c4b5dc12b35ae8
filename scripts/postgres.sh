#!/usr/bin/env bash
# Starts the local PostgreSQL cluster (installed by scripts/setup.sh), makes
# sure the test role and database exist, and prints the connection URL.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
cluster_state=$(pg_lsclusters --no-header 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')
if [ -z "$cluster_state" ]; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
    su postgres -c "pg_isready -q" && break
    sleep 0.2
done
port=$(pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'meshplane'\"" | grep -q 1 \
    || su postgres -c "psql -p $port -qc \"CREATE ROLE meshplane LOGIN SUPERUSER PASSWORD 'meshplane'\""
su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname = 'meshplane_test'\"" | grep -q 1 \
    || su postgres -c "psql -p $port -qc \"CREATE DATABASE meshplane_test OWNER meshplane\""
echo "postgres://meshplane:meshplane@127.0.0.1:$port/meshplane_test"
