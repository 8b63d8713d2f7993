"""Session fixtures for the layers that run against a real Kubernetes control plane (tests/kube, tests/e2e).

``control_plane``: etcd + kube-apiserver + kube-controller-manager + kube-scheduler, built from testbin/
by scripts/testbin.sh (cached) and started on loopback (zonectl.harness.controlplane).

``zonectl_cluster``: that control plane with three kubelet-less Nodes (zonectl.harness.kubelet), a real
OVN Northbound shaped like OVN-Kubernetes', and zonectl installed the way users install it:
``manifests/install.sh`` run twice, first with a configuration the controller refuses (the install must
stop before the webhooks), then with the right one and ``--nb`` pointing at the NB. The controller's
two replicas are real ``zonectl`` processes with their ServiceAccount's token.

Either one that cannot be built or started skips its tests with the reason, or fails them when
``ZONECTL_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import pytest
import yaml

from zonectl.harness.controllerpod import ZonectlControllerRunner
from zonectl.harness.controlplane import Binaries, ControlPlane, ControlPlaneError
from zonectl.harness.kubelet import Kubelet

ROOT = Path(__file__).resolve().parent.parent
NS = "zonectl-system"
CONTROLLER_SA_GROUP = f"system:serviceaccounts:{NS}"
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


@pytest.fixture(scope="session")
def control_plane(kube_binaries: Binaries) -> Iterator[ControlPlane]:
    plane = ControlPlane(kube_binaries, audit_groups=(CONTROLLER_SA_GROUP,))
    try:
        plane.start()
    except ControlPlaneError as exc:
        unavailable(f"the control plane did not start: {exc}")
    try:
        yield plane
    finally:
        plane.stop()


@dataclass
class InstallRun:
    returncode: int
    stdout: str
    stderr: str
    webhooks_after: list[str]


@dataclass
class ZonectlCluster:
    """The installed cluster and handles the tests use."""

    plane: ControlPlane
    kubelet: Kubelet
    api: Any  # kubernetes.client.ApiClient (admin)
    nb: Any  # zonectl.ovn.sandbox.OvnSandbox
    installs: list[InstallRun] = field(default_factory=list)

    @property
    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.api)

    @property
    def custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kw)

    def controller_pods(self) -> list[dict[str, Any]]:
        out = self.kubectl("-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=controller", "-o", "json")
        return [p for p in yaml.safe_load(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]

    def controller_logs(self) -> str:
        return "\n".join(run_.directory.joinpath("log").read_text(errors="replace")
                         for key, run_ in self.kubelet.running().items()
                         if key.startswith(f"{NS}/zonectl-controller-") and run_.directory.joinpath("log").exists())


def install(plane: ControlPlane, *args: str, timeout: float = 400) -> InstallRun:
    """``manifests/install.sh`` with the built kubectl and the admin kubeconfig, as a user runs it."""
    env = {**os.environ, "KUBECTL": str(plane.bin["kubectl"]), "KUBECONFIG": str(plane.kubeconfig)}
    proc = subprocess.run([str(ROOT / "manifests" / "install.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    hooks = plane.kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o", "name").stdout.split()
    return InstallRun(proc.returncode, proc.stdout, proc.stderr, hooks)


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


@pytest.fixture(scope="session")
def zonectl_cluster(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonectlCluster]:
    import kubernetes

    from zonectl.core.config import parse_config
    from zonectl.ovn.sandbox import OvnSandbox, SandboxError
    from zonectl.ovn.testbed import Cluster

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
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    core = kubernetes.client.CoreV1Api(api)
    kubelet = Kubelet(core, work / "pods", cluster=str(layout.cluster),
                      runners=(ZonectlControllerRunner(core, control_plane),))
    try:
        Cluster(nb.nbctl, layout, node_count=2).build(gateways=False)
        kubelet.start()
        kubelet.add_node("node-1")
        kubelet.add_node("node-2")
        kubelet.add_node("node-3", honour_hint=False, taints=[UPSTREAM_TAINT])  # OVN-K without zonectl's patch
        cluster = ZonectlCluster(control_plane, kubelet, api, nb)
        broken = work / "broken.yaml"
        bad = dict(config, operator={**config["operator"], "spoofedHints": "deny"})  # a typo the controller refuses
        broken.write_text(yaml.safe_dump(bad))
        cluster.installs.append(install(control_plane, "--tls", "openssl", "--config", str(broken), "--timeout", "25"))
        cluster.installs.append(install(control_plane, "--tls", "openssl", "--nb", nb.nb_tcp_remote))
        if cluster.installs[-1].returncode != 0:
            run_ = cluster.installs[-1]
            raise ControlPlaneError(f"manifests/install.sh failed ({run_.returncode}):\n{run_.stderr[-3000:]}\n"
                                    f"controller log:\n{cluster.controller_logs()[-3000:]}\nkubelet: {kubelet.errors[-5:]}")
        yield cluster
    finally:
        kubelet.stop()
        nb.stop()
        api.close()
