#!/usr/bin/env bash
# The test command: installs what the tests need, checks the code (ruff, mypy, the import layers in
# .importlinter), then runs every test layer (pure, OVN, netns/gateway, operator, lab; the kind e2e suite
# skips without KUBECONFIG). With ZONECTL_REQUIRE_ALL=1 (CI) a layer that cannot run fails, not skips.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
echo "zonectl: ruff, mypy, lint-imports"
.venv/bin/ruff check --quiet .
.venv/bin/mypy --no-error-summary
.venv/bin/lint-imports --no-logo --no-cache
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
