#!/usr/bin/env bash
# Install everything zonectl, its lab and its tests need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only checks. Python packages go into ./.venv (Debian's Python is
# externally managed, so no system-wide pip).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ovn-central ovn-host openvswitch-switch tayga iptables nftables iperf3 iproute2 ethtool
              procps kmod python3-venv python3-pip)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "zonectl: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start no daemons here (no systemd in containers); zonectl starts its own.

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
echo "zonectl: installed ($(.venv/bin/zonectl --version 2>/dev/null || echo zonectl))"
