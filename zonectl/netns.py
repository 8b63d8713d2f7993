"""Throwaway network namespaces and veth pairs for the lab, the tests and the benchmarks.

Every object made here is named with a caller-chosen prefix plus a random suffix, so that
parallel runs never collide, and every object is removed by ``close()`` (or the context
manager) whatever state it is in. Production code (the gateway) talks netlink through
pyroute2; this module is for building test topologies, where ``ip`` is the clearest tool.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from typing import Sequence


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr on failure (no shell, no string-built lines)."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def unique_name(prefix: str, length: int = 15) -> str:
    """A kernel-legal (<= 15 chars) name: prefix + random hex."""
    suffix = secrets.token_hex(4)
    return (prefix + suffix)[:length] if len(prefix) + len(suffix) > length else prefix + suffix


@dataclass
class Netns:
    """A network namespace that deletes itself (and so every link inside it) on close."""

    name: str
    _open: bool = field(default=False, init=False)

    @classmethod
    def create(cls, prefix: str = "zt") -> "Netns":
        ns = cls(unique_name(prefix))
        run(["ip", "netns", "add", ns.name])
        ns._open = True
        ns.run(["ip", "link", "set", "lo", "up"])
        return ns

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, timeout=timeout)

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a long-running process inside the namespace; the caller ends it by its pid."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"])

    def close(self) -> None:
        if self._open:
            kill_netns_pids(self.name)
            run(["ip", "netns", "delete", self.name], check=False)
            self._open = False

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_netns_pids(name: str) -> None:
    """End processes still running inside a namespace (so deleting it really frees it)."""
    proc = run(["ip", "netns", "pids", name], check=False)
    for pid in proc.stdout.split():
        run(["kill", "-TERM", pid], check=False)


def veth(a: str, b: str, ns_a: Netns | None = None, ns_b: Netns | None = None) -> None:
    """Create a veth pair a<->b and move each end into its namespace (None = this namespace).

    Checksum offload is turned off on both ends: veth leaves TCP checksums for the NIC to fill,
    which the OVS userspace datapath and Tayga's TUN never do, so TCP would be dropped.
    """
    run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
    for dev, ns in ((a, ns_a), (b, ns_b)):
        if ns is not None:
            run(["ip", "link", "set", dev, "netns", ns.name])
        exec_ = ns.run if ns is not None else run
        exec_(["ethtool", "-K", dev, "tx", "off"], check=False)
        exec_(["ip", "link", "set", dev, "up"])


def delete_link(name: str) -> None:
    run(["ip", "link", "delete", name], check=False)


def list_netns() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"], check=False).stdout.splitlines() if line.strip()]
