"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The binaries are built from the Go modules in ``testbin/`` by ``scripts/testbin.sh`` (cached outside the
repository, keyed by version), as controller-runtime's envtest runs prebuilt ones. Everything a run
writes (certificates, kubeconfigs, etcd's data, logs) lives in one temporary directory that ``stop()``
removes after ending exactly the processes it started, by pid.

What differs from a cluster, on purpose:

* no kubelet: Nodes are API objects (``kubelet.py`` plays the kubelet's part for pods), so the
  controller-manager runs without its node-lifecycle controller, which would mark kubelet-less nodes
  unreachable and evict their pods;
* the Service network is IPv6 (``SERVICE_CIDR``), as in the clusters zonectl is for, and the API server
  advertises ``::1`` without a ``kubernetes`` Service endpoint (``--endpoint-reconciler-type=none``);
* webhooks are reached the way a cluster reaches them, through their Service: with
  ``--enable-aggregator-routing`` the API server dials a ready endpoint of the Service's EndpointSlice
  (an address on a local link, never loopback: the API refuses loopback endpoints).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..procs import alive, kill_pid, wait_until
from .pki import Pair, Pki, write_kubeconfig

SERVICE_CIDR = "fd00:10:96::/112"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd")
# Controllers that need a kubelet behind every Node: off (see the module docstring).
_KCM_CONTROLLERS = "*,-node-lifecycle-controller"


class ControlPlaneError(RuntimeError):
    """A component did not build or start; the message says which and carries its log's tail."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane commands (``scripts/testbin.sh`` builds and prints them)."""

    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    @classmethod
    def build(cls, root: Path, *, timeout: float = 3600) -> "Binaries":
        """Run ``scripts/testbin.sh`` in the checkout ``root`` (builds what is missing, shows progress on
        stderr; a cached build only prints) and return what it printed."""
        script = root / "scripts" / "testbin.sh"
        proc = subprocess.run([str(script)], stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ControlPlaneError(f"{script} failed (exit {proc.returncode}); its output is above")
        paths = {name: Path(path) for name, path in (line.split(" ", 1) for line in proc.stdout.splitlines() if line)}
        missing = [c for c in COMPONENTS if c not in paths]
        if missing:
            raise ControlPlaneError(f"{script} printed no {', '.join(missing)}")
        return cls(paths)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out (a start that loses the race is retried by the caller)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager, + scheduler) in a directory of their own.

    Use as a context manager or call ``start()``/``stop()``. ``kubeconfig`` is an admin (system:masters)
    kubeconfig; ``kubectl()`` runs the built kubectl with it.
    """

    def __init__(self, binaries: Binaries, *, controller_manager: bool = True, scheduler: bool = True,
                 audit_groups: tuple[str, ...] = (), start_timeout: float = 90.0) -> None:
        self.bin = binaries
        self.audit_groups = audit_groups  # requests of these groups' users go to the audit log (Metadata)
        self.with_kcm = controller_manager
        self.with_scheduler = scheduler
        self.start_timeout = start_timeout
        self.dir = Path()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.pki: Pki | None = None
        self.kubeconfig = Path()
        self._args: dict[str, list[str]] = {}
        # (start, end) wall-clock times when a restarted kube-apiserver was not Ready yet: it may answer
        # before its RBAC caches are filled (a 403 then says nothing about the roles)
        self.unready: list[tuple[float, float]] = []

    # ----- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://[::1]:{self.ports['kube-apiserver']}"

    def start(self) -> "ControlPlane":
        self.dir = Path(tempfile.mkdtemp(prefix="zonectl-kube-"))
        try:
            self._make_pki()
            self._start_with_retry("etcd", self._etcd_args, self._etcd_healthy)
            self._start_with_retry("kube-apiserver", self._apiserver_args, self.ready)
            if self.with_kcm:
                self._start_with_retry("kube-controller-manager", self._kcm_args, lambda: self._healthz("kube-controller-manager"))
            if self.with_scheduler:
                self._start_with_retry("kube-scheduler", self._scheduler_args, lambda: self._healthz("kube-scheduler"))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End our processes (newest first, by pid) and remove the directory."""
        for name in reversed(list(self.procs)):
            self._kill(name)
        self.procs.clear()
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if alive(p.pid)}

    def restart(self, name: str) -> None:
        """Stop one component and start it again with the same arguments and port (clients reconnect)."""
        began = time.time()
        self._kill(name)
        self._spawn(name, self._args[name])
        check = self.ready if name == "kube-apiserver" else (
            self._etcd_healthy if name == "etcd" else lambda: self._healthz(name))
        self._wait(name, check)
        if name == "kube-apiserver":
            self.unready.append((began, time.time()))

    @contextlib.contextmanager
    def paused(self, name: str = "etcd") -> Iterator[None]:
        """SIGSTOP one component for the duration of the block (SIGCONT afterwards, whatever happens)."""
        pid = self.procs[name].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log so far: one event per request of an ``audit_groups`` user, its latest stage.

        A watch is logged when its response starts (ResponseStarted), not only when it ends: a watch
        that outlives the session (kopf's) would otherwise never show up."""
        path = self.dir / "audit.log"
        if not path.exists():
            return []
        latest: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                latest[event["auditID"]] = event
        return list(latest.values())

    # ----- clients -----------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl (admin unless ``kubeconfig``); ``check`` raises with its stderr."""
        cmd = [str(self.bin["kubectl"]), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def token_kubeconfig(self, path: Path, token: str, user: str) -> Path:
        """A kubeconfig for a bearer token (e.g. a ServiceAccount's, from ``kubectl create token``)."""
        assert self.pki is not None
        return write_kubeconfig(path, self.url, self.pki.ca.cert, user=user, token=token)

    def ready(self) -> bool:
        """``/readyz`` of the API server answers ok (every post-start hook done, etcd reachable)."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", context=self.tls_context(), timeout=3) as resp:
                return bool(resp.status == 200)
        except (OSError, ssl.SSLError):
            return False

    # ----- internals ---------------------------------------------------------------------------------

    def _make_pki(self) -> None:
        pki = self.pki = Pki(self.dir / "pki")
        self._serving = pki.issue("apiserver", "kube-apiserver", server_names=(
            "::1", "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", SERVICE_CIDR.split("/")[0] + "1"))
        self._admin = pki.issue("admin", "zonectl-harness-admin", org="system:masters", client=True)
        self._sa = pki.signing_key("service-account")
        self._clients: dict[str, Pair] = {
            "kube-controller-manager": pki.issue("kcm", "system:kube-controller-manager", client=True),
            "kube-scheduler": pki.issue("scheduler", "system:kube-scheduler", client=True),
        }

    def tls_context(self) -> ssl.SSLContext:
        """TLS for a client of the API server: trusts its CA, presents the admin certificate."""
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self._admin.cert), str(self._admin.key))
        return ctx

    def _start_with_retry(self, name: str, args_for, check) -> None:
        """Start on fresh ports; a port another process took in between is retried twice."""
        for attempt in range(3):
            args = args_for()
            self._spawn(name, args)
            try:
                self._wait(name, check)
                self._args[name] = args
                return
            except ControlPlaneError as exc:
                self._kill(name)
                if "address already in use" not in str(exc) or attempt == 2:
                    raise

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")
        with log:
            self.procs[name] = subprocess.Popen([str(self.bin[name]), *args], stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)

    def _wait(self, name: str, check) -> None:
        proc = self.procs[name]

        def up() -> bool:
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{_tail(self.dir / f'{name}.log')}")
            return bool(check())

        try:
            wait_until(up, self.start_timeout, f"{name} to be ready", interval=0.2)
        except TimeoutError as exc:
            raise ControlPlaneError(f"{exc}:\n{_tail(self.dir / f'{name}.log')}") from None

    def _kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            kill_pid(proc.pid, timeout=10)
            proc.poll()

    def _etcd_args(self) -> list[str]:
        client, peer = free_port(), free_port()
        self.ports["etcd"] = client
        data = self.dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        return ["--name", "harness", "--data-dir", str(data), "--log-level", "warn", "--unsafe-no-fsync",
                "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"harness=http://127.0.0.1:{peer}"]

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def _apiserver_args(self) -> list[str]:
        assert self.pki is not None
        port = self.ports["kube-apiserver"] = free_port("::1")
        self.kubeconfig = write_kubeconfig(self.dir / "admin.kubeconfig", self.url, self.pki.ca.cert,
                                           user="admin", client=self._admin)
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=::1", "--advertise-address=::1", f"--secure-port={port}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--endpoint-reconciler-type=none",
            f"--client-ca-file={self.pki.ca.cert}",
            f"--tls-cert-file={self._serving.cert}", f"--tls-private-key-file={self._serving.key}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={self._sa.cert}", f"--service-account-signing-key-file={self._sa.key}",
            "--enable-aggregator-routing=true", "--allow-privileged=true", "--profiling=false",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if not self.audit_groups:
            return []
        policy = self.dir / "audit-policy.yaml"
        policy.write_text(json.dumps({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived", "Panic"],
            "rules": [{"level": "Metadata", "userGroups": list(self.audit_groups)}, {"level": "None"}]}))
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.dir / 'audit.log'}",
                "--audit-log-mode=blocking", "--audit-log-format=json"]

    def _component_args(self, name: str) -> list[str]:
        assert self.pki is not None
        port = self.ports[name] = free_port()
        kubeconfig = write_kubeconfig(self.dir / f"{name}.kubeconfig", self.url, self.pki.ca.cert,
                                      user=name, client=self._clients[name])
        return [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={port}",
                "--leader-elect=false"]

    def _kcm_args(self) -> list[str]:
        assert self.pki is not None
        return [*self._component_args("kube-controller-manager"), "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self._sa.key}", f"--root-ca-file={self.pki.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", f"--controllers={_KCM_CONTROLLERS}"]

    def _scheduler_args(self) -> list[str]:
        return self._component_args("kube-scheduler")

    def _healthz(self, name: str) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the component's self-signed serving certificate
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.ports[name]}/healthz", context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, ssl.SSLError):
            return False

