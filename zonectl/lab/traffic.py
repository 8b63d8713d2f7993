"""Sending the probes: one ``zonectl.harness.probe`` batch per source pod, all pods at once, results keyed by probe id."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable

from ..harness import probe
from .expect import Service
from .state import LabError


@dataclass(frozen=True)
class ProbeSpec:
    id: str
    netns: str  # where the probe starts (the source pod, or the internet for inbound probes)
    host: str  # destination address, or a name the pod resolves
    service: Service
    timeout: float = 1.0

    def as_json(self) -> dict:
        proto = "ping" if self.service.proto == "icmpv6" else self.service.proto
        return {"id": self.id, "proto": proto, "host": self.host, "port": self.service.port, "timeout": self.timeout}


@dataclass(frozen=True)
class Observation:
    ok: bool
    answer: str | None  # the address the far side saw (tcp/udp) or the replier (icmp)
    ms: float
    error: str = ""
    resolved: str | None = None  # a probe of a name: the address the pod's resolver gave


def send(probes: Iterable[ProbeSpec]) -> dict[str, Observation]:
    """Run every probe; each source namespace gets one probe process running its probes concurrently."""
    by_ns: dict[str, list[ProbeSpec]] = {}
    for p in probes:
        by_ns.setdefault(p.netns, []).append(p)
    procs: list[tuple[str, subprocess.Popen]] = []
    for ns, specs in by_ns.items():
        # The probe list goes in a file, not a pipe: every batch must start at once, not when the
        # previous one has been read.
        fd, path = tempfile.mkstemp(prefix="zonectl-probes-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump([s.as_json() for s in specs], fh)
        with open(path) as stdin:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *probe.command("batch")],
                                    stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.unlink(path)
        procs.append((ns, proc))
    out: dict[str, Observation] = {}
    for ns, proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise LabError(f"probes from {ns} did not finish within 60s") from None
        if proc.returncode != 0:
            raise LabError(f"probes in {ns} failed: {stderr.strip()}")
        for r in json.loads(stdout):
            out[r["id"]] = Observation(bool(r["ok"]), r.get("answer"), float(r.get("ms", 0)), r.get("error", ""),
                                       r.get("resolved"))
    return out


@dataclass(frozen=True)
class NeighborCheck:
    """Did a pod resolve its router's MAC by ICMPv6 neighbour discovery through OVN?"""

    pod: str
    router: str
    want_mac: str
    seen_mac: str | None
    state: str

    @property
    def ok(self) -> bool:
        return self.seen_mac == self.want_mac and self.state in ("REACHABLE", "STALE", "DELAY", "PROBE")


def flush_neighbors(netns: str) -> None:
    """Forget learnt neighbours, so the next packet needs a fresh NS/NA exchange through OVN."""
    subprocess.run(["ip", "netns", "exec", netns, "ip", "-6", "neigh", "flush", "dev", "eth0"],
                   capture_output=True, text=True, timeout=10)


def neighbor(netns: str, pod: str, router: str, want_mac: str) -> NeighborCheck:
    out = subprocess.run(["ip", "netns", "exec", netns, "ip", "-6", "neigh", "show", router, "dev", "eth0"],
                         capture_output=True, text=True, timeout=10).stdout.split()
    mac = out[out.index("lladdr") + 1] if "lladdr" in out else None
    return NeighborCheck(pod, router, want_mac, mac, out[-1] if out else "NONE")
