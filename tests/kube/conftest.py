"""The kube layer: zonectl against a real kube-apiserver, etcd, controller-manager and scheduler.

The session fixtures (tests/kubeplane.py, shared with tests/e2e) build the binaries once
(scripts/testbin.sh, cached), start the control plane and install zonectl with manifests/install.sh.
Ordering: the tests that need the control plane (tests/kube, then tests/e2e) run after every other
layer, so the control plane (which lives until the session ends) does not load the machine while the
timing-sensitive layers run, and a background build (scripts/test.sh) has time to finish. Inside the
kube layer the faults run after the other tests, then the last policy's deletion (it removes every
policy and restarts the controller), and the RBAC audit last: it checks every request the controller
made during the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
E2E = HERE.parent / "e2e"
LAST = ("test_faults.py", "test_last_policy.py", "test_rbac.py")


def _rank(item: pytest.Item) -> int:
    path = Path(str(item.fspath))
    if path.parent == HERE:
        return 2 + LAST.index(path.name) if path.name in LAST else 1
    if path.parent == E2E:
        return 2 + len(LAST)
    return 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A failed kube test carries what the cluster said: controller logs, kubelet errors, pods."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("zonectl_cluster")
    if report.failed and cluster is not None:
        report.sections.append(("zonectl cluster", cluster.diagnostics()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.kube)
    items.sort(key=_rank)  # stable: the order within each rank is pytest's
