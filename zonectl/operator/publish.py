"""Publishing the rules document (``zonectl.core.published``): the controller's one write of it.

Two places, both replaced whole so a reader never sees half a document: a ConfigMap the gateway and node
agent DaemonSets mount (in a cluster), or a file (a gateway on the same host, the lab, tests).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from ..core.published import DATA_KEY


class Publisher(Protocol):
    def publish(self, text: str) -> None:
        """Make ``text`` the current gateway inputs (idempotent)."""


class FilePublisher:
    """Writes the document to a file atomically (rename), for a gateway on the same host or for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def publish(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ConfigMapPublisher:
    """Patches one ConfigMap that ships with the manifests (RBAC allows patching that name only)."""

    def __init__(self, core_api: Any, namespace: str, name: str) -> None:
        self.api = core_api  # kubernetes.client.CoreV1Api, built at start-up (never at import)
        self.namespace = namespace
        self.name = name

    def publish(self, text: str) -> None:
        self.api.patch_namespaced_config_map(self.name, self.namespace, {"data": {DATA_KEY: text}})
