#!/usr/bin/env bash
# The main job: install, bring the whole system up on this machine (OVN, pods in namespaces,
# Tayga gateway, an IPv4 "internet") and prove the example policies with real packets.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
.venv/bin/zonectl lab up
exec .venv/bin/zonectl lab test
