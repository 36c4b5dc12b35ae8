#!/usr/bin/env bash
# Checks the systemd units of packaging/ with `systemd-analyze verify`
# (syntax, directives, and that ExecStart names an executable), against the
# binaries of the given target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${1:?usage: scripts/check-packaging.sh TARGET_DIR}
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not installed: units not checked" >&2
    exit 0
fi
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
for unit in packaging/*.service; do
    sed -e "s|/usr/bin/meshplane-server|$target_dir/debug/meshplane-server|" \
        -e "s|/usr/bin/meshplane |$target_dir/debug/meshplane |" \
        -e "s|^EnvironmentFile=.*|EnvironmentFile=$PWD/packaging/proxy.env|" \
        "$unit" >"$units/$(basename "$unit")"
done
systemd-analyze verify "$units"/*.service
echo "packaging units verified"
