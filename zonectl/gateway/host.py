"""The one I/O edge of the gateway: where its commands, processes and netlink sockets run.

Why a class: the same gateway code runs on a real egress host (``netns=None``) and, in tests and
benchmarks, inside a network namespace the test created. Everything that touches the kernel goes
through a Host, so nothing in zonectl.gateway can reach the root namespace by accident.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..core.errors import ZonectlError


class CommandError(ZonectlError):
    """A command the gateway ran failed; carries its stderr so the caller can say why."""

    def __init__(self, cmd: Sequence[str], returncode: int, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.cmd)} failed ({returncode}): {self.stderr}")


class SysctlError(ZonectlError):
    """A kernel setting the gateway needs cannot be read or set here; the message says where to set it."""


PROC_SYS = Path("/proc/sys")
CLONE_NEWNET = 0x40000000


def sysctl_path(key: str) -> Path:
    """``net.ipv4.ip_forward`` -> /proc/sys/net/ipv4/ip_forward (a key with "/" is already a path, as in
    sysctl(8), for interface names with dots)."""
    return PROC_SYS / (key if "/" in key else key.replace(".", "/"))


def cannot_set(key: str, value: str, current: str, why: str) -> str:
    return (f"cannot set sysctl {key}={value} (it is {current}): {why}. The gateway needs {key}={value}; set it on "
            f"the node: '{key} = {value}' in /etc/sysctl.d/ (then `sysctl --system`), or, for the Kubernetes "
            f"DaemonSet, its privileged init container (manifests/components/gateway-sysctl; docs/gateway.md)")


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "/proc/sys is read-only here (a container that is not privileged mounts it read-only)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (writing /proc/sys needs root)"
    return exc.strerror or str(exc)


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

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket in this host's network namespace. A socket stays in the namespace it was made in, so
        for a named one a short-lived thread enters the namespace (setns: that thread only) to make it."""
        if not self.netns:
            return socket.socket(family, kind, proto)
        made: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                with open(f"/run/netns/{self.netns}", "rb") as fh:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fh.fileno(), CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns {self.netns}: {os.strerror(err)}")
                made.append(socket.socket(family, kind, proto))
            except BaseException as exc:  # handed to the caller's thread
                made.append(exc)

        thread = threading.Thread(target=make, name=f"netns-{self.netns}")
        thread.start()
        thread.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]

    # sysctls: on the real host through /proc/sys (the gateway image has no procps), in a named
    # namespace through `ip netns exec NS sysctl` (/proc/sys/net shows the namespace of the reader).
    def sysctl_get(self, key: str) -> str:
        """A sysctl's value; SysctlError if it cannot be read (e.g. IPv6 disabled: no net.ipv6 keys)."""
        try:
            if self.netns:
                return self.run(["sysctl", "-n", key]).stdout.strip()
            return sysctl_path(key).read_text().strip()
        except CommandError as exc:
            raise SysctlError(f"cannot read sysctl {key}: {exc.stderr}") from exc
        except OSError as exc:
            raise SysctlError(f"cannot read sysctl {key}: {_why(exc)}") from exc

    def sysctl_set(self, key: str, value: str) -> bool:
        """Set a sysctl; returns True if it changed (so re-applying reports no change). Nothing is written
        when it already has the value, so a read-only /proc/sys is fine on a node configured beforehand;
        otherwise SysctlError names the key, the value needed and where to set it instead."""
        value = str(value)
        current = self.sysctl_get(key)
        if current == value:
            return False
        try:
            if self.netns:
                self.run(["sysctl", "-qw", f"{key}={value}"])
            else:
                sysctl_path(key).write_text(value)
        except CommandError as exc:
            raise SysctlError(cannot_set(key, value, current, exc.stderr)) from exc
        except OSError as exc:
            raise SysctlError(cannot_set(key, value, current, _why(exc))) from exc
        return True
