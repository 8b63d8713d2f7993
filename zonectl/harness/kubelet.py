"""What a kubelet and OVN-Kubernetes do for pods, played against a kubelet-less control plane.

Nodes are API objects shaped like OVN-Kubernetes' (``k8s.ovn.org/node-subnets``, a podCIDR, Ready, room
for pods). ``Kubelet`` watches the pods the scheduler binds to them and, as the real parts would:

* gives each pod an address from its node's /64, OR-ing in the zonectl IPAM hint on nodes whose
  allocator is "patched" (``honour_hint``), and writes ``k8s.ovn.org/pod-networks`` (an UPDATE that
  passes the webhooks, as OVN-K's does) and ``status.podIPs``;
* marks pods Running and Ready; runs the pods a ``Runner`` knows (the zonectl controller) as local
  processes, Ready once their readiness endpoint answers, restarted when they exit;
* finishes graceful deletions (a pod with a deletionTimestamp is stopped, then deleted with grace 0).

Processes share this host's network namespace, so each runnable pod's address is put on a link (one
end of a veth pair) the kubelet creates and removes: the API server reaches a webhook endpoint there as
it would reach a pod. Every name and node subnet is random, so two harnesses on one machine do not collide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from ..procs import alive, kill_pid

POD_NETWORKS = "k8s.ovn.org/pod-networks"
NODE_SUBNETS = "k8s.ovn.org/node-subnets"


@dataclass
class Launch:
    """How a Runner starts one pod: the command, when it counts as ready, and what it was given."""

    argv: list[str]
    ready: Callable[[], bool]
    files: dict[str, Path] = field(default_factory=dict)  # in-container path -> local file
    ports: dict[str, int] = field(default_factory=dict)  # e.g. "metrics" -> the port it listens on


class Runner(Protocol):
    def launch(self, pod: dict[str, Any], ip: str, directory: Path) -> Launch | None:
        """A Launch for a pod this runner knows how to run, else None (the pod is only marked Running)."""


@dataclass
class Node:
    name: str
    subnet: ipaddress.IPv6Network
    honour_hint: bool
    next_offset: int = 3  # ::1 OVN-K's gateway, ::2 its management port


@dataclass
class Running:
    """One pod the kubelet holds: its address, and its process if a Runner started one."""

    uid: str
    ip: str
    directory: Path
    launch: Launch | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    ready: bool = False
    exited: float | None = None  # when its process was seen dead (restart after a back-off)
    started: str = field(default_factory=lambda: _now())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Kubelet:
    """Nodes, pod addresses and pod status for a ``ControlPlane`` (see the module docstring)."""

    def __init__(self, api: Any, directory: Path, *, cluster: str = "fd00:10:244::/48",
                 hint_annotation: str = "zonectl.io/ipam-hint", runners: tuple[Runner, ...] = (),
                 interval: float = 0.3) -> None:
        self.api = api  # kubernetes.client.CoreV1Api with admin credentials
        self.dir = directory
        self.cluster = ipaddress.IPv6Network(cluster)
        self.hint_annotation = hint_annotation
        self.runners = runners
        self.interval = interval
        self.nodes: dict[str, Node] = {}
        self.pods: dict[str, Running] = {}  # by namespace/name
        self._addresses: dict[str, tuple[str, str]] = {}  # namespace/name -> (uid, address)
        self.link = "zk" + secrets.token_hex(4)
        self._subnet_base = secrets.randbelow(0xF000) + 0x100
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # ----- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "Kubelet":
        self.dir.mkdir(parents=True, exist_ok=True)
        # a veth pair (this kernel may lack the dummy driver); its peer only needs to be up
        _ip("link", "add", self.link, "type", "veth", "peer", "name", self.link + "p")
        _ip("link", "set", self.link, "up")
        _ip("link", "set", self.link + "p", "up")
        self._thread = threading.Thread(target=self._loop, name="harness-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop, end every process it started (by pid) and remove the veth pair."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for run in self.pods.values():
                if run.proc is not None:
                    kill_pid(run.proc.pid, timeout=10)
            self.pods.clear()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.link)

    # ----- nodes -------------------------------------------------------------------------------------

    def add_node(self, name: str, *, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
                 honour_hint: bool = True) -> Node:
        """A Ready Node with OVN-K's subnet annotation; ``honour_hint`` = its allocator has zonectl's patch.

        The API server taints a new Node ``not-ready``; the node-lifecycle controller (off here) would
        lift it once the Node is Ready, so this does: the Node ends with exactly ``taints``."""
        subnet = ipaddress.IPv6Network((int(self.cluster.network_address) | (self._subnet_base + len(self.nodes)) << 64, 64))
        node_ip = str(subnet.network_address + 2)
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  **(labels or {})},
                         "annotations": {NODE_SUBNETS: json.dumps({"default": [str(subnet)]}),
                                         "k8s.ovn.org/zone-name": name}},
            "spec": {"podCIDR": str(subnet), "podCIDRs": [str(subnet)]},
        }
        self.api.create_node(body)
        self.api.patch_node_status(name, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "harness node",
                            "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
            "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "250"}}})
        self.api.patch_node(name, {"spec": {"taints": taints or None}})
        node = self.nodes[name] = Node(name, subnet, honour_hint)
        return node

    # ----- views for tests ---------------------------------------------------------------------------

    def process(self, namespace: str, name: str) -> subprocess.Popen[bytes] | None:
        with self._lock:
            run = self.pods.get(f"{namespace}/{name}")
            return run.proc if run else None

    def log(self, namespace: str, name: str) -> str:
        with self._lock:
            run = self.pods.get(f"{namespace}/{name}")
        if run is None:
            return ""
        path = run.directory / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def running(self) -> dict[str, Running]:
        with self._lock:
            return dict(self.pods)

    # ----- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                # bound pods only: unscheduled ones (a benchmark's thousands) are not a kubelet's business
                pods = self.api.list_pod_for_all_namespaces(field_selector="spec.nodeName!=", _request_timeout=10).items
            except Exception as exc:  # API server restarting or paused etcd: try again next round
                self._note(f"list pods: {exc}")
                continue
            seen = set()
            for pod in pods:
                body = self.api.api_client.sanitize_for_serialization(pod)
                if (body.get("spec") or {}).get("nodeName") not in self.nodes:
                    continue
                key = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
                seen.add(key)
                try:
                    self._sync(key, body)
                except Exception as exc:
                    self._note(f"{key}: {exc}")
            with self._lock:
                gone = [k for k in self.pods if k not in seen]
            for key in gone:
                self._forget(key)

    def _note(self, text: str) -> None:
        self.errors = (self.errors + [text])[-50:]

    def _sync(self, key: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with self._lock:
            run = self.pods.get(key)
        if run is not None and run.uid != meta["uid"]:  # same name, new pod
            self._forget(key)
            run = None
        if meta.get("deletionTimestamp"):
            self._forget(key)
            # the kubelet's last word: containers gone, delete now (grace in the body: a body overrides
            # the query parameter, and a bound pod's default is 30 s)
            self.api.delete_namespaced_pod(meta["name"], meta["namespace"], body={
                "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
            return
        if run is None:
            run = self._admit(key, pod)
        changed = self._supervise(run)
        if changed or (pod.get("status") or {}).get("phase") != "Running":
            self._write_status(pod, run)

    def _admit(self, key: str, pod: dict[str, Any]) -> Running:
        """Address (the OVN-K part), then the process if a Runner knows the pod (the kubelet part). A
        Runner that raises (its Secret not there yet) is asked again next round, like ContainerCreating."""
        meta = pod["metadata"]
        ip = self._address(key, pod)
        directory = self.dir / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        run = Running(meta["uid"], ip, directory)
        for runner in self.runners:
            launch = runner.launch(pod, ip, directory)
            if launch is not None:
                _ip("addr", "add", f"{ip}/128", "dev", self.link, "nodad")
                run.launch = launch
                break
        with self._lock:
            self.pods[key] = run
        return run

    def _address(self, key: str, pod: dict[str, Any]) -> str:
        """Allocate once per pod uid and publish it as OVN-K does, in ``k8s.ovn.org/pod-networks``."""
        meta = pod["metadata"]
        known = self._addresses.get(key)
        if known is not None and known[0] == meta["uid"]:
            return known[1]
        node = self.nodes[pod["spec"]["nodeName"]]
        ip = self._allocate(node, (meta.get("annotations") or {}).get(self.hint_annotation))
        self.api.patch_namespaced_pod(meta["name"], meta["namespace"], {"metadata": {"annotations": {POD_NETWORKS: json.dumps(
            {"default": {"ip_addresses": [f"{ip}/64"], "ip_address": f"{ip}/64", "mac_address": "0a:58:00:00:00:01",
                         "gateway_ips": [str(node.subnet.network_address + 1)], "role": "primary"}})}}})
        self._addresses[key] = (meta["uid"], ip)
        return ip

    def _allocate(self, node: Node, hint: str | None) -> str:
        offset = node.next_offset
        node.next_offset += 1
        addr = int(node.subnet.network_address) | offset
        if hint and node.honour_hint:
            with contextlib.suppress(ValueError):
                addr |= int(ipaddress.IPv6Address(hint))
        return str(ipaddress.IPv6Address(addr))

    def _supervise(self, run: Running) -> bool:
        """Start or restart the pod's process; track readiness. True when the status must be rewritten."""
        if run.launch is None:
            changed = not run.ready
            run.ready = True
            return changed
        if run.proc is None or run.proc.poll() is not None:
            if run.proc is not None:
                if run.exited is None:  # back off like CrashLoopBackOff (shorter): 1 s per restart, at most 10 s
                    run.exited = time.monotonic()
                    run.ready = False
                    return True
                if time.monotonic() - run.exited < min(1 + run.restarts, 10):
                    return False
                run.restarts += 1
                run.exited = None
            tmp = run.directory / "tmp"  # the pod's own /tmp: what a killed process leaves there goes with the pod
            tmp.mkdir(exist_ok=True)
            with open(run.directory / "log", "ab") as log:
                run.proc = subprocess.Popen(run.launch.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=run.directory,
                                            env={**os.environ, "TMPDIR": str(tmp)})
            return True
        ready = run.launch.ready()
        changed = ready != run.ready
        run.ready = ready
        return changed

    def _write_status(self, pod: dict[str, Any], run: Running) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        state = "True" if run.ready else "False"
        node = self.nodes[spec["nodeName"]]
        self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": {
            "phase": "Running", "podIP": run.ip, "podIPs": [{"ip": run.ip}], "startTime": run.started,
            "hostIP": str(node.subnet.network_address + 2), "hostIPs": [{"ip": str(node.subnet.network_address + 2)}],
            "conditions": [{"type": t, "status": s, "lastTransitionTime": _now()} for t, s in (
                ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", state), ("Ready", state))],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": run.ready,
                                   "restartCount": run.restarts, "started": True,
                                   "state": {"running": {"startedAt": run.started}}} for c in spec["containers"]]}})

    def _forget(self, key: str) -> None:
        self._addresses.pop(key, None)
        with self._lock:
            run = self.pods.pop(key, None)
        if run is None:
            return
        if run.proc is not None and alive(run.proc.pid):
            kill_pid(run.proc.pid, timeout=10)
        if run.launch is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("addr", "del", f"{run.ip}/128", "dev", self.link)


def wait_ready(kubelet: Kubelet, namespace: str, name: str, timeout: float = 60) -> Running:
    """The pod's Running record once the kubelet has it Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = kubelet.running().get(f"{namespace}/{name}")
        if run is not None and run.ready:
            return run
        time.sleep(0.2)
    raise TimeoutError(f"pod {namespace}/{name} not Ready after {timeout:.0f}s (kubelet errors: {kubelet.errors[-3:]})")
