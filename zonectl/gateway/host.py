"""The one I/O edge of the gateway: where its commands, processes and netlink sockets run.

Why a class: the same gateway code runs on a real egress host (``netns=None``) and, in tests and
benchmarks, inside a network namespace the test created. Everything that touches the kernel goes
through a Host, so nothing in zonectl.gateway can reach the root namespace by accident.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..core.errors import ZonectlError


class CommandError(ZonectlError):
    """A command the gateway ran failed; carries its stderr so the caller can say why."""

    def __init__(self, cmd: Sequence[str], returncode: int, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.cmd)} failed ({returncode}): {self.stderr}")


@dataclass(frozen=True)
class Host:
    """Where to act: the current network namespace (None) or a named one (``ip netns``)."""

    netns: str | None = None

    def argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else list(cmd)

    def run(
        self, cmd: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(cmd), input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise CommandError(cmd, proc.returncode, proc.stderr or proc.stdout)
        return proc

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(cmd), **kwargs)

    @contextlib.contextmanager
    def iproute(self) -> Iterator[Any]:
        """A pyroute2 netlink socket in this host's namespace (closed on exit)."""
        from pyroute2 import IPRoute, NetNS  # imported here: pure modules never pay for it

        sock = NetNS(self.netns) if self.netns else IPRoute()
        try:
            yield sock
        finally:
            sock.close()

    def sysctl_get(self, key: str) -> str:
        return self.run(["sysctl", "-n", key]).stdout.strip()

    def sysctl_set(self, key: str, value: str) -> bool:
        """Set a sysctl; returns True if it changed (so re-applying reports no change)."""
        if self.sysctl_get(key) == str(value):
            return False
        self.run(["sysctl", "-qw", f"{key}={value}"])
        return True
