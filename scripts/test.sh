#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test layer
# (pure, OVN, netns/gateway, operator, lab; the kind e2e suite skips without KUBECONFIG).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
