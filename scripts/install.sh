#!/usr/bin/env bash
# Install everything zonectl, its lab and its tests need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only checks. Python packages go into ./.venv (Debian's Python is
# externally managed, so no system-wide pip).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ovn-central ovn-host openvswitch-switch tayga iptables nftables iperf3 iproute2 ethtool
              procps kmod python3-venv python3-pip shellcheck)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "zonectl: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # zonectl starts its own OVN/OVS/Tayga daemons in state dirs of its own. On a host with systemd the
  # packages would start the distribution's daemons too (and Debian's tayga default config adds a nat64
  # TUN and a NAT44 MASQUERADE rule), so forbid service starts while installing, then disable them.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -d /run/systemd/system ]; then
    for pkg in "${missing[@]}"; do   # only the services of packages this run installed
      case "$pkg" in
        ovn-central) units="ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb" ;;
        ovn-host) units="ovn-host ovn-controller" ;;
        openvswitch-switch) units="openvswitch-switch ovs-vswitchd ovsdb-server" ;;
        tayga) units="tayga" ;;
        *) units="" ;;
      esac
      for unit in $units; do systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
    done
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[test]"; } >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; echo "zonectl: pip install failed (output above)" >&2; exit 1
fi
rm -f "$log"
echo "zonectl: installed ($(.venv/bin/zonectl --version 2>/dev/null || echo zonectl))"
