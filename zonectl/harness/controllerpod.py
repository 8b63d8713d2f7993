"""The zonectl controller's pods (manifests/controller.yaml) run as local ``zonectl`` processes.

A kubelet would mount the ConfigMap and the TLS Secret, project a ServiceAccount token bound to the
pod, and start the image's ``zonectl`` with the pod's arguments in the pod's network namespace. Here
the files go into the pod's directory, the token (a real TokenRequest for the pod's ServiceAccount,
bound to the pod) into a kubeconfig, and the process runs on this host. Because every replica shares
the host's network namespace, the config is adjusted the way a namespace would have isolated it: the
webhook listens on the pod's own address (port unchanged, so the Service's ``targetPort`` holds) and
the metrics and liveness ports are free ones. Nothing else in the pod's config changes.
"""

from __future__ import annotations

import base64
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ControlPlane, free_port
from .kubelet import Launch

CONFIG_KEY = "zonectl.yaml"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _env(container: dict[str, Any], pod: dict[str, Any], ip: str) -> dict[str, str]:
    """The container's environment as a kubelet resolves it (plain values and the downward API fields
    the manifests use), for ``$(NAME)`` references in its arguments."""
    fields = {"status.podIP": ip, "metadata.name": pod["metadata"]["name"],
              "metadata.namespace": pod["metadata"]["namespace"]}
    out: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            out[var["name"]] = str(var["value"])
        elif (path := ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")) in fields:
            out[var["name"]] = fields[path]
    return out


class ZonectlControllerRunner:
    """A ``kubelet.Runner`` for containers whose arguments start the controller (``operator run`` or
    ``run controller``); ``python`` runs ``-m zonectl`` (the image's entrypoint is ``zonectl``)."""

    def __init__(self, api: Any, plane: ControlPlane, *, python: str = sys.executable) -> None:
        self.api = api
        self.plane = plane
        self.python = python
        self._ports: set[int] = set()  # handed out already: the kernel may offer a released one again

    def _port(self) -> int:
        port = free_port()
        while port in self._ports:
            port = free_port()
        self._ports.add(port)
        return port

    @staticmethod
    def wants(container: dict[str, Any]) -> bool:
        args = list(container.get("command") or [])[1:] + list(container.get("args") or [])
        return args[:2] in (["operator", "run"], ["run", "controller"])

    def launch(self, pod: dict[str, Any], ip: str, directory: Path) -> Launch | None:
        spec, meta = pod["spec"], pod["metadata"]
        container = next((c for c in spec["containers"] if self.wants(c)), None)
        if container is None:
            return None
        files = self._volumes(pod, container, directory)
        config_path = files.get("/etc/zonectl/zonectl.yaml")
        if config_path is None:
            raise RuntimeError(f"pod {meta['name']}: no zonectl.yaml mounted")
        config = yaml.safe_load(config_path.read_text())
        op = config.setdefault("operator", {})
        wh = op.setdefault("webhook", {})
        ports = {"metrics": self._port(), "liveness": self._port()}
        wh["addr"] = ip
        for key in ("certFile", "keyFile"):
            if wh.get(key) in files:
                wh[key] = str(files[wh[key]])
        op["metrics"] = {"port": ports["metrics"]}
        op["liveness"] = {"port": ports["liveness"]}
        config_path.write_text(yaml.safe_dump(config))
        token = self.api.create_namespaced_service_account_token(
            spec.get("serviceAccountName", "default"), meta["namespace"],
            {"spec": {"expirationSeconds": 3600, "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}).status.token
        kubeconfig = self.plane.token_kubeconfig(directory / "kubeconfig", token,
                                                 user=f"system:serviceaccount:{meta['namespace']}:{spec.get('serviceAccountName')}")
        env = _env(container, pod, ip)
        args = [str(files.get(a, a)) for a in list(container.get("command") or [])[1:] + list(container.get("args") or [])]
        args = [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]
        argv = [self.python, "-m", "zonectl", *args, "--kubeconfig", str(kubeconfig)]
        ready_url = f"http://[{ip}]:{ports['metrics']}/readyz"
        return Launch(argv, lambda: _http_ok(ready_url), files, ports)

    def _volumes(self, pod: dict[str, Any], container: dict[str, Any], directory: Path) -> dict[str, Path]:
        """Each mounted ConfigMap/Secret key as a file; maps the in-container path to the local one."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        out: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            vol = volumes.get(mount["name"], {})
            if "configMap" in vol:
                cm = self.api.read_namespaced_config_map(vol["configMap"]["name"], pod["metadata"]["namespace"])
                data = {k: v.encode() for k, v in (cm.data or {}).items()}
            elif "secret" in vol:
                secret = self.api.read_namespaced_secret(vol["secret"]["secretName"], pod["metadata"]["namespace"])
                data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
            else:
                continue  # emptyDir and the like: the process' own directory serves
            local = directory / mount["name"]
            local.mkdir(exist_ok=True)
            for key, value in data.items():
                (local / key).write_bytes(value)
            if mount.get("subPath"):
                out[mount["mountPath"]] = local / mount["subPath"]
            else:
                for key in data:
                    out[f"{mount['mountPath'].rstrip('/')}/{key}"] = local / key
        return out
