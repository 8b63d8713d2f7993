"""Session fixtures for the layers that run against a real Kubernetes control plane (tests/kube, tests/e2e).

``kube_binaries``: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl, built from
testbin/ by scripts/testbin.sh (cached).

``zonectl_cluster``: those started on loopback with three kubelet-less Nodes (zonectl.harness.kubecluster),
a real OVN Northbound shaped like OVN-Kubernetes', and zonectl installed the way users install it:
``manifests/install.sh`` run twice, first with a configuration the controller refuses (the install must
stop before the webhooks), then with the right one and ``--nb`` pointing at the NB. The controller's
two replicas are real ``zonectl`` processes with their ServiceAccount's token.

Either one that cannot be built or started skips its tests with the reason, or fails them when
``ZONECTL_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import pytest
import yaml

from zonectl.harness.controlplane import Binaries, ControlPlane, ControlPlaneError
from zonectl.harness.kubecluster import NS, InstallRun, KubeCluster  # noqa: F401 (NS: for the tests)
from zonectl.harness.kubelet import Kubelet

ROOT = Path(__file__).resolve().parent.parent
# node-3's allocator ignores the hint (upstream OVN-K); only pods that tolerate this land there
UPSTREAM_TAINT = {"key": "zonectl.test/upstream-allocator", "effect": "NoSchedule"}
UPSTREAM_TOLERATION = {**UPSTREAM_TAINT, "operator": "Exists"}


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under ZONECTL_REQUIRE_ALL=1 (a layer that cannot run must not pass silently in CI)."""
    if os.environ.get("ZONECTL_REQUIRE_ALL") == "1":
        pytest.fail(f"ZONECTL_REQUIRE_ALL=1 and the kube layer cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kube_binaries() -> Binaries:
    try:
        return Binaries.build(ROOT)
    except (ControlPlaneError, OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"the control-plane binaries could not be built (scripts/testbin.sh): {exc}")


_zone_ids = itertools.count(0x5000)


def zone_id() -> int:
    """A zone id no other test of this session uses (ids must be unique cluster-wide)."""
    return next(_zone_ids)


def wait(what: str, pred: Callable[[], Any], timeout: float = 60, interval: float = 0.25) -> Any:
    """Poll until ``pred()`` is truthy; fail the test naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # noqa: BLE001 - an API error while polling is just "not yet"
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class ZonectlCluster:
    """The installed cluster (``KubeCluster``), its OVN Northbound and what the two installs did."""

    kube: KubeCluster
    nb: Any  # zonectl.harness.sandbox.OvnSandbox
    installs: list[InstallRun] = field(default_factory=list)

    @property
    def plane(self) -> ControlPlane:
        return self.kube.plane

    @property
    def kubelet(self) -> Kubelet:
        assert self.kube.kubelet is not None
        return self.kube.kubelet

    @property
    def core(self) -> Any:
        return self.kube.core

    @property
    def custom(self) -> Any:
        return self.kube.custom

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl(*args, **kw)

    def controller_logs(self) -> str:
        return self.kube.controller_logs()

    def diagnostics(self) -> str:
        """Pods, the kubelet's recent errors and each running controller's log tail (for a failed test)."""
        out = [self.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout,
               f"kubelet errors: {self.kubelet.errors[-10:]}"]
        for key, run in self.kubelet.running().items():
            if run.launch is not None:
                log = (run.directory / "log").read_text(errors="replace").splitlines() if (run.directory / "log").exists() else []
                out.append(f"--- {key} (pid {run.proc.pid if run.proc else None}, ready {run.ready}, "
                           f"ports {run.launch.ports}, restarts {run.restarts}):")
                out.extend(line[:400] for line in log[-25:])
        return "\n".join(out)


@pytest.fixture(scope="session")
def zonectl_cluster(kube_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonectlCluster]:
    from zonectl.core.config import parse_config
    from zonectl.harness.sandbox import OvnSandbox, SandboxError
    from zonectl.harness.ovnk_cluster import Cluster

    if os.geteuid() != 0:
        unavailable("the kube layer needs root (the kubelet puts pod addresses on a veth link)")
    missing = [b for b in ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl", "openssl", "ip") if not shutil.which(b)]
    if missing:
        unavailable(f"the kube layer needs {', '.join(missing)} (scripts/install.sh)")
    work = tmp_path_factory.mktemp("zonectl-cluster")
    shipped = next(d for d in yaml.safe_load_all((ROOT / "manifests" / "config.yaml").read_text())
                   if d["metadata"]["name"] == "zonectl-config")
    config = yaml.safe_load(shipped["data"]["zonectl.yaml"])
    layout = parse_config(config).layout
    try:
        nb = OvnSandbox(state_dir=work / "ovn", tcp=True).start()
    except SandboxError as exc:
        unavailable(f"the OVN Northbound sandbox did not start: {exc}")
    kube = KubeCluster(kube_binaries, ROOT, cluster_cidr=str(layout.cluster))
    try:
        try:
            kube.start()
        except ControlPlaneError as exc:
            unavailable(f"the control plane did not start: {exc}")
        Cluster(nb.nbctl, layout, node_count=2).build(gateways=False)
        kubelet = kube.kubelet
        assert kubelet is not None
        kubelet.add_node("node-1")
        kubelet.add_node("node-2")
        kubelet.add_node("node-3", honour_hint=False, taints=[UPSTREAM_TAINT])  # OVN-K without zonectl's patch
        cluster = ZonectlCluster(kube, nb)
        broken = work / "broken.yaml"
        bad = dict(config, operator={**config["operator"], "spoofedHints": "deny"})  # a typo the controller refuses
        broken.write_text(yaml.safe_dump(bad))
        cluster.installs.append(kube.install("--tls", "openssl", "--config", str(broken), "--timeout", "25"))
        cluster.installs.append(kube.install("--tls", "openssl", "--nb", nb.nb_tcp_remote))
        if cluster.installs[-1].returncode != 0:
            run_ = cluster.installs[-1]
            raise ControlPlaneError(f"manifests/install.sh failed ({run_.returncode}):\n{run_.stderr[-3000:]}\n"
                                    f"controller log:\n{kube.controller_logs()[-3000:]}\nkubelet: {kubelet.errors[-5:]}")
        yield cluster
    finally:
        kube.stop()
        nb.stop()


@pytest.fixture(scope="session")
def examples_applied(zonectl_cluster: ZonectlCluster) -> str:
    """``kubectl apply`` of examples/zones.yaml and examples/policies.yaml (through the webhooks); its output."""
    out = zonectl_cluster.kubectl("apply", "-f", str(ROOT / "examples" / "zones.yaml"),
                                  "-f", str(ROOT / "examples" / "policies.yaml"))
    return out.stdout
