#!/usr/bin/env bash
# Installs what the data plane's namespace test and throughput bench use on a
# fresh Debian machine (run as root): `ping` for the kernel TUN test and
# iperf3 for manual comparisons. Idempotent.
set -euo pipefail

need=()
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
