"""A kubelet-less Kubernetes cluster with zonectl installed the way users install it.

``KubeCluster`` = ``ControlPlane`` + ``Kubelet`` (Nodes shaped like OVN-Kubernetes', the controller's
pods run as ``zonectl`` processes) + ``install()``, which runs ``manifests/install.sh`` from the checkout
with the built kubectl. Tests, the lab and ``benchmarks/admission.py`` share it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .controllerpod import ZonectlControllerRunner
from .controlplane import Binaries, ControlPlane
from .kubelet import Kubelet

NS = "zonectl-system"
CONTROLLER_SA_GROUP = f"system:serviceaccounts:{NS}"


@dataclass(frozen=True)
class InstallRun:
    """What ``manifests/install.sh`` did: exit status, output, and the webhook configurations afterwards."""

    returncode: int
    stdout: str
    stderr: str
    webhooks_after: tuple[str, ...]


class KubeCluster:
    """Control plane + kubelet stand-in + zonectl's manifests, all removed by ``stop()``."""

    def __init__(self, binaries: Binaries, root: Path, *, cluster_cidr: str = "fd00:10:244::/48",
                 audit: bool = True) -> None:
        self.root = root
        self.plane = ControlPlane(binaries, audit_groups=(CONTROLLER_SA_GROUP,) if audit else ())
        self.cluster_cidr = cluster_cidr
        self.dir = Path()
        self.api: Any = None
        self.kubelet: Kubelet | None = None

    def __enter__(self) -> "KubeCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "KubeCluster":
        import kubernetes

        self.dir = Path(tempfile.mkdtemp(prefix="zonectl-pods-"))
        try:
            self.plane.start()
            self.api = kubernetes.config.new_client_from_config(config_file=str(self.plane.kubeconfig))
            core = kubernetes.client.CoreV1Api(self.api)
            self.kubelet = Kubelet(core, self.dir, cluster=self.cluster_cidr,
                                   runners=(ZonectlControllerRunner(core, self.plane),)).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        if self.api is not None:
            self.api.close()
            self.api = None
        self.plane.stop()
        if self.dir != Path():
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----- what users do -----------------------------------------------------------------------------

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kw)

    def install(self, *args: str, timeout: float = 400) -> InstallRun:
        """``manifests/install.sh ARGS`` with the built kubectl and the admin kubeconfig."""
        env = {**os.environ, "KUBECTL": str(self.plane.bin["kubectl"]), "KUBECONFIG": str(self.plane.kubeconfig)}
        proc = subprocess.run([str(self.root / "manifests" / "install.sh"), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
        hooks = self.kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o", "name")
        return InstallRun(proc.returncode, proc.stdout, proc.stderr, tuple(hooks.stdout.split()))

    # ----- views -------------------------------------------------------------------------------------

    @property
    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.api)

    @property
    def custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self.api)

    def controller_logs(self) -> str:
        """Every controller process' output so far (all replicas, every restart)."""
        assert self.kubelet is not None
        logs = sorted(self.dir.glob(f"{NS}-zonectl-controller-*/log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)
