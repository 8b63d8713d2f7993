"""Throwaway network namespaces and veth pairs for the lab, the tests and the benchmarks.

Every object made here is named with a caller-chosen prefix plus a random suffix, so that
parallel runs never collide, and every object is removed by ``close()`` (or the context
manager) whatever state it is in. Production code (the gateway) talks netlink through
pyroute2; this module is for building test topologies, where ``ip`` is the clearest tool.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

NETNS_ETC = Path("/etc/netns")  # ip netns exec bind-mounts /etc/netns/NAME/* over /etc/* for its processes


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
    def create(cls, prefix: str = "zt", *, name: str | None = None) -> "Netns":
        """A new namespace named ``prefix`` + random suffix (or exactly ``name``), loopback up."""
        ns = cls(name or unique_name(prefix))
        run(["ip", "netns", "add", ns.name])
        ns._open = True
        ns.run(["ip", "link", "set", "lo", "up"])
        return ns

    @classmethod
    def adopt(cls, name: str) -> "Netns":
        """An existing namespace (made by another process) that ``close()`` will delete."""
        ns = cls(name)
        ns._open = True
        return ns

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, timeout=timeout)

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a long-running process inside the namespace; the caller ends it by its pid."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"])

    def resolv_conf(self, nameservers: Sequence[str]) -> None:
        """The resolver processes of this namespace use (through ``ip netns exec``), as a pod's is its own."""
        etc = NETNS_ETC / self.name
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("".join(f"nameserver {ns}\n" for ns in nameservers) + "options timeout:1\n")

    def close(self) -> None:
        if self._open:
            kill_netns_pids(self.name)
            run(["ip", "netns", "delete", self.name], check=False)
            remove_etc(self.name)
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


def remove_etc(name: str) -> None:
    """Remove /etc/netns/NAME (our namespace's resolv.conf), if there is one."""
    if name and "/" not in name and (NETNS_ETC / name).is_dir():
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def veth(a: str, b: str, ns_a: Netns | None = None, ns_b: Netns | None = None, *, mac_b: str | None = None) -> None:
    """Create a veth pair a<->b directly inside its namespaces (None = this namespace), both ends up.

    Created in place (``ip link add A netns X type veth peer name B netns Y``), not moved there
    afterwards, so a crash can never leave an end behind in the root namespace; deleting either
    namespace deletes the pair. ``mac_b`` is b's MAC, set before the link comes up (its IPv6
    link-local address derives from it).

    Checksum offload is turned off on both ends: veth leaves TCP checksums for the NIC to fill,
    which the OVS userspace datapath and Tayga's TUN never do, so TCP would be dropped.
    """
    def end(dev: str, ns: Netns | None, mac: str | None) -> list[str]:
        return [dev, *(["netns", ns.name] if ns is not None else []), *(["address", mac] if mac else [])]

    run(["ip", "link", "add", *end(a, ns_a, None), "type", "veth", "peer", "name", *end(b, ns_b, mac_b)])
    for dev, ns in ((a, ns_a), (b, ns_b)):
        exec_ = ns.run if ns is not None else run
        exec_(["ethtool", "-K", dev, "tx", "off"], check=False)
        exec_(["ip", "link", "set", dev, "up"])


def list_netns() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"], check=False).stdout.splitlines() if line.strip()]


def netfilter_state(ns: Netns | str) -> str:
    """Every packet-filter rule of a namespace as text, without counters or timestamps: what a test compares
    byte for byte before and after a command that must change nothing (ip6tables and iptables, both
    tables, and the whole nftables ruleset)."""
    name = ns.name if isinstance(ns, Netns) else ns
    parts = []
    for cmd in (["ip6tables-save"], ["iptables-save"], ["nft", "-s", "list", "ruleset"]):
        out = run(["ip", "netns", "exec", name, *cmd]).stdout
        lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in out.splitlines() if not line.startswith("#")]
        if cmd[0] == "nft":  # a table replaced in one transaction is listed last: the order carries no meaning
            lines = sorted(t.strip("\n") for t in re.split(r"(?m)^(?=table )", "\n".join(lines)) if t.strip())
        parts.append(f"== {' '.join(cmd)}\n" + "\n".join(lines))
    return "\n".join(parts) + "\n"
