#!/usr/bin/env bash
# The test command: installs what the tests need, checks the code (ruff, mypy, the import layers in
# .importlinter), builds (or reuses) the Kubernetes control plane, then runs every layer: pure, OVN,
# netns/gateway, operator, lab, kube (a real kube-apiserver) and the e2e suite (against KUBECONFIG's
# cluster if set, else against the kube layer's control plane). With ZONECTL_REQUIRE_ALL=1 (CI) a layer
# that cannot run fails, not skips.
#
#   scripts/test.sh              everything; with arguments, they go to pytest (e.g. tests/unit -x)
#
# The control-plane binaries (scripts/testbin.sh, cached in ${ZONECTL_TESTBIN:-/var/cache/zonectl-testbin})
# take minutes to build the first time. A full run builds kubectl first, while install.sh runs (the
# operator layer's kustomize tests use it), then the rest in the background while the other layers run;
# the kube layer, which pytest runs last, waits for it. Its log: $TMPDIR/zonectl-testbin.log.
set -euo pipefail
cd "$(dirname "$0")/.."

log=${TMPDIR:-/tmp}/zonectl-testbin.log
build=""
# shellcheck disable=SC2317  # called by the EXIT trap
stop_build() {   # the background build's own process group, by its pid (a later run reuses what it made)
  if [ -n "$build" ] && kill -0 "$build" 2>/dev/null; then kill -- "-$build" 2>/dev/null || true; fi
}
if [ $# = 0 ]; then
  : > "$log"
  setsid scripts/testbin.sh kubectl > /dev/null 2>> "$log" &
  build=$!
  trap stop_build EXIT
fi

./scripts/install.sh

if [ -n "$build" ]; then
  echo "zonectl: building kubectl (first run only; log: $log)"
  wait "$build" || { tail -n 20 "$log" >&2; echo "zonectl: scripts/testbin.sh kubectl failed" >&2; exit 1; }
  kubectl=$(scripts/testbin.sh kubectl | awk '{print $2}')
  PATH="$(dirname "$kubectl"):$PATH"
  export PATH
  setsid scripts/testbin.sh > /dev/null 2>> "$log" &
  build=$!
  echo "zonectl: building the rest of the control plane in the background (log: $log)"
fi

echo "zonectl: ruff, mypy, lint-imports"
.venv/bin/ruff check --quiet .
.venv/bin/mypy --no-error-summary
.venv/bin/lint-imports --no-logo --no-cache

status=0
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
if [ -n "$build" ] && ! wait "$build"; then
  tail -n 20 "$log" >&2
  echo "zonectl: the background build of the control plane failed (log: $log)" >&2
  [ "$status" != 0 ] || status=1
fi
exit "$status"
