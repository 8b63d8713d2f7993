"""The lab's Kubernetes side: a control plane with the real zonectl controller, fed with ``kubectl apply``.

Why a daemon of its own (``python -m zonectl.lab.kube --state-dir DIR``): the control plane's harness
(``harness.kubecluster``) plays the kubelet from a thread of the process that started it, and ``lab up``
is a short-lived command. So ``lab up`` starts this daemon, which

* starts etcd, kube-apiserver, controller-manager and scheduler (built and cached by scripts/testbin.sh),
  one Node per lab node, and installs zonectl with ``manifests/install.sh`` (its config: the shipped
  one with the lab's layout, pointed at the lab's OVN Northbound);
* ``kubectl apply``s the lab's zones and policies and waits until every object is Ready: from then on the
  controller, not the lab, writes the OVN ACLs;
* mounts the controller's published gateway document (ConfigMap ``zonectl-gateway-rules``) as a
  kubelet mounts a ConfigMap: copied to the gateway's state dir whenever it changes; the gateway daemon
  (``gwd``) reads only that file;
* writes ``kube/kube.json`` (phase, the admin kubeconfig, kubectl, and every pid it started, so that
  ``lab down`` can end them even if this daemon was killed) and runs until SIGTERM, then stops all of it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ZonectlError
from ..harness.controlplane import Binaries
from ..harness.kubecluster import NS, KubeCluster
from ..procs import alive, cmdline, kill_pid, wait_until
from .inputs import LAB_NAMESPACE, LAB_POLICIES, Inputs, compile_inputs
from .state import PACKAGE_ROOT, LabState, daemon_main
from .topology import Topology

PROGRAM = "zonectl.lab.kube"  # what the daemon's command line contains (checked before signalling it)
INFO = "kube/kube.json"
GATEWAY_CONFIGMAP = "zonectl-gateway-rules"
READY_TIMEOUT = 180.0
KINDS = "securityzones,securityzonepolicies"

log = logging.getLogger("zonectl.lab.kube")


def controller_config(root: Path, lab_config: dict[str, Any], nb: str) -> dict[str, Any]:
    """The shipped controller configuration (manifests/config.yaml) with the lab's own sections."""
    shipped = next(d for d in yaml.safe_load_all((root / "manifests" / "config.yaml").read_text())
                   if d["metadata"]["name"] == "zonectl-config")
    config = yaml.safe_load(shipped["data"]["zonectl.yaml"])
    for key, value in lab_config.items():
        if key in ("apiVersion", "kind"):
            continue
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) and isinstance(value, dict) else value
    config["ovn"] = {**config.get("ovn", {}), "nb": nb}
    operator = config["operator"]  # the lab's own policies (priority 0, every zone) come from an admin namespace
    operator["adminNamespaces"] = [*operator.get("adminNamespaces", []), LAB_NAMESPACE]
    return config


def unready(items: list[dict[str, Any]]) -> list[str]:
    """``kind/name`` of every object whose Ready condition is not True (none listed counts as not Ready)."""
    out = []
    for obj in items:
        conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") != "True":
            out.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return out if items else ["(no objects yet)"]


def not_ready(kube: KubeCluster) -> list[str]:
    """The zones and policies that are not Ready."""
    return unready(json.loads(kube.kubectl("get", KINDS, "-A", "-o", "json").stdout)["items"])


class LabKube:
    """The daemon's work (see the module docstring); ``info`` is what ``kube.json`` says."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.root = PACKAGE_ROOT
        self.dir = state.state_dir / "kube"
        self.info: dict[str, Any] = {"phase": "starting", "pid": os.getpid(), "processes": [], "dirs": []}
        self.kube: KubeCluster | None = None
        self._stop = threading.Event()

    def save(self) -> None:
        tmp = self.dir / "kube.json.tmp"
        tmp.write_text(json.dumps(self.info, indent=2, sort_keys=True))
        os.replace(tmp, self.dir / "kube.json")

    def _record(self) -> None:
        """Every process and directory the cluster made, for a ``lab down`` after this daemon died."""
        assert self.kube is not None and self.kube.kubelet is not None
        procs = [(pid, name) for name, pid in self.kube.plane.pids().items()]
        procs += [(run.proc.pid, "zonectl") for run in self.kube.kubelet.running().values() if run.proc is not None]
        self.info["processes"] = [{"pid": pid, "program": program} for pid, program in procs]
        self.info["dirs"] = [str(self.kube.plane.dir), str(self.kube.dir)]
        self.info["link"] = self.kube.kubelet.link
        self.save()

    def run(self) -> None:
        inputs = Inputs.from_dict(self.state.inputs)
        compiled = compile_inputs(inputs)
        topo = Topology.from_dict(self.state.topology)
        self.dir.mkdir(exist_ok=True)
        self.save()
        binaries = Binaries.build(self.root)
        self.kube = kube = KubeCluster(binaries, self.root, cluster_cidr=str(compiled.config.layout.cluster))
        kube.start()
        assert kube.kubelet is not None
        for node in topo.nodes:
            kube.kubelet.add_node(node.name)
        shutil.copy(kube.plane.kubeconfig, self.dir / "kubeconfig")
        self.info.update(kubeconfig=str(self.dir / "kubeconfig"), kubectl=str(binaries["kubectl"]))
        self._record()
        config = self.dir / "zonectl.yaml"
        lab_config = yaml.safe_load(inputs.config.read_text())
        nb = f"unix:{Path(self.state.ovn_dir) / 'nb.sock'}"
        config.write_text(yaml.safe_dump(controller_config(self.root, lab_config, nb)))
        installed = kube.install("--tls", "openssl", "--config", str(config), "--timeout", "120")
        if installed.returncode != 0:
            raise ZonectlError(f"manifests/install.sh failed ({installed.returncode}): {installed.stderr[-2000:]}\n"
                               f"controller log: {kube.controller_logs()[-2000:]}")
        self._record()
        for ns in sorted({p["metadata"].get("namespace") or "default" for p in compiled.policies} - {NS, "default"}):
            kube.kubectl("create", "namespace", ns)
        kube.kubectl("apply", "-f", str(inputs.zones))
        kube.kubectl("apply", "-f", str(inputs.policies))
        kube.kubectl("apply", "-f", str(self.state.state_dir / LAB_POLICIES))  # the lab's own (DNS, inbound)
        wait_until(lambda: not not_ready(kube), READY_TIMEOUT, "every zone and policy Ready", interval=0.5)
        self.mirror()
        self._record()
        self.info["phase"] = "ready"
        self.save()
        while not self._stop.wait(1.0):
            self.mirror()

    def mirror(self) -> None:
        """Copy the published gateway document to the file the gateway reads (when it changed)."""
        assert self.kube is not None
        from .gwd import published_file

        out = self.kube.kubectl("get", "configmap", GATEWAY_CONFIGMAP, "-n", NS, "-o", "json", check=False)
        if out.returncode != 0:
            log.warning("cannot read ConfigMap %s: %s", GATEWAY_CONFIGMAP, out.stderr.strip())
            return
        text = (json.loads(out.stdout).get("data") or {}).get("gateway.json")
        target = published_file(self.state.state_dir)
        if text is None or (target.exists() and target.read_text() == text):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)

    def stop(self) -> None:
        self._stop.set()


def serve(state_dir: Path) -> int:
    state = LabState.load(state_dir)
    if state is None:
        raise ZonectlError(f"no lab ledger in {state_dir}")
    lab = LabKube(state)
    signal.signal(signal.SIGTERM, lambda *_: lab.stop())
    try:
        lab.run()
        return 0
    except BaseException as exc:
        lab.info.update(phase="failed", error=str(exc)[-4000:])
        lab.save()
        raise
    finally:
        if lab.kube is not None:
            lab.kube.stop()


# --- the side of `lab up`, `lab test` and `lab down` ----------------------------------------------


def read_info(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / INFO).read_text()))
    except (OSError, ValueError):
        return {}


def start(state: LabState, *, timeout: float = READY_TIMEOUT + 120) -> dict[str, Any]:
    """Start the daemon and wait until every object is Ready; raise with its log's tail if it is not."""
    from .state import LabError

    logs = state.state_dir / "logs"
    proc = state.spawn_daemon(PROGRAM, "kubernetes control plane and zonectl controller", "kube.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_info(state.state_dir)
        if info.get("phase") == "ready":
            return info
        if info.get("phase") == "failed" or proc.poll() is not None:
            break
        time.sleep(0.25)
    tail = "\n".join((logs / "kube.log").read_text(errors="replace").splitlines()[-15:])
    raise LabError(f"the lab's Kubernetes side did not become Ready: {read_info(state.state_dir).get('error') or tail}"
                   f"\n(log: {logs / 'kube.log'})")


def get(state_dir: Path) -> tuple[str, bool]:
    """``kubectl get securityzones,securityzonepolicies -A`` as a user runs it, and whether all are Ready."""
    info = read_info(state_dir)
    if info.get("phase") != "ready":
        return f"unavailable: the lab's control plane is not running (phase {info.get('phase', 'none')})", False
    cmd = [info["kubectl"], "--kubeconfig", info["kubeconfig"], "get", KINDS, "-A"]
    shown = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    js = subprocess.run([*cmd, "-o", "json"], capture_output=True, text=True, timeout=30)
    if shown.returncode != 0 or js.returncode != 0:
        return f"unavailable: {(shown.stderr or js.stderr).strip()}", False
    return shown.stdout.rstrip(), not unready(json.loads(js.stdout)["items"])


def stored_policies(state_dir: Path) -> list[dict[str, Any]]:
    """The SecurityZonePolicy objects as the API server stores them (what the controller compiles)."""
    from .state import LabError

    info = read_info(state_dir)
    if info.get("phase") != "ready":
        raise LabError(f"the lab's control plane is not running (phase {info.get('phase', 'none')}): "
                       "run `zonectl lab up` again")
    out = subprocess.run([info["kubectl"], "--kubeconfig", info["kubeconfig"], "get", "securityzonepolicies", "-A",
                          "-o", "json"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise LabError(f"kubectl get securityzonepolicies: {out.stderr.strip()}")
    return list(json.loads(out.stdout)["items"])


def leftovers(state_dir: Path) -> list[str]:
    """After the daemon was stopped: end what it recorded and still runs, remove its dirs; what was removed."""
    info = read_info(state_dir)
    removed = []
    for rec in info.get("processes") or []:
        if alive(rec["pid"]) and rec["program"] in cmdline(rec["pid"]) and kill_pid(rec["pid"], timeout=10):
            removed.append(f"process {rec['pid']} ({rec['program']})")
    for d in info.get("dirs") or []:
        if Path(d).exists():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"dir {d}")
    link = info.get("link")
    if link and subprocess.run(["ip", "link", "del", link], capture_output=True).returncode == 0:
        removed.append(f"link {link}")
    return removed


if __name__ == "__main__":
    sys.exit(daemon_main("zonectl lab: Kubernetes control plane and controller (see lab up)", serve))
