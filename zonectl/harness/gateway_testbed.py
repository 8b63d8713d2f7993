"""A throwaway gateway lab in network namespaces: zone pods (IPv6 only) -> gateway -> IPv4 "internet".

Used by tests/netns and benchmarks/gateway.py. It builds only what the environment provides in real
life (links, pod routes on the gateway, the uplink address and default route, an IPv4 server); the
gateway code under test does everything else (TUN, Tayga, NAT64 routes, sysctls, firewall, NAT).

    pod-<zone> eth0 fdXX..::5/128 --- p<i> gateway uplink 198.51.100.1/24 --- eth0 internet
                 default via fe80::1        fe80::1, route pod/128          198.51.100.254/24
                                                                            lo 192.0.2.10 (server)

Names inside the namespaces are fixed (``uplink``, ``eth0``, ``p0``...) and every veth is created
directly inside its two namespaces; the namespaces themselves get random names, so any number of labs
run side by side. ``close()`` removes everything it made. Traffic comes from ``zonectl.harness.probe``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ..procs import kill_pid
from .netns import Netns, run, veth
from .probe import command as probe_command

UPLINK = "uplink"
GATEWAY_V4 = IPv4Address("198.51.100.1")
INTERNET_V4 = IPv4Address("198.51.100.254")
SERVER_V4 = IPv4Address("192.0.2.10")
TCP_PORT = 8080
UDP_PORT = 8053


@dataclass
class Pod:
    zone: str
    address: IPv6Address
    ns: Netns
    gw_dev: str


@dataclass
class Testbed:
    __test__ = False  # tell pytest this is not a test class

    gateway: Netns
    internet: Netns
    workdir: Path
    pods: dict[str, Pod] = field(default_factory=dict)
    _procs: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def create(cls, pods: dict[str, IPv6Address | str], *, server: bool = True) -> "Testbed":
        """Build the lab; ``pods`` maps a label (usually the zone name) to the pod's IPv6 address."""
        gw = Netns.create("ztgw")
        bed = cls(gw, Netns.create("ztin"), Path(tempfile.mkdtemp(prefix="zonectl-gw-")))
        try:
            bed._wire_uplink()
            for i, (label, addr) in enumerate(pods.items()):
                bed.add_pod(label, IPv6Address(addr), i)
            if server:
                bed.start_server()
        except BaseException:
            bed.close()
            raise
        return bed

    def _wire_uplink(self) -> None:
        veth(UPLINK, "eth0", self.gateway, self.internet)
        self.gateway.run(["ip", "addr", "add", f"{GATEWAY_V4}/24", "dev", UPLINK])
        self.gateway.run(["ip", "route", "add", "default", "via", str(INTERNET_V4)])
        self.internet.run(["ip", "addr", "add", f"{INTERNET_V4}/24", "dev", "eth0"])
        self.internet.run(["ip", "addr", "add", f"{SERVER_V4}/32", "dev", "lo"])

    def add_pod(self, label: str, address: IPv6Address, index: int) -> Pod:
        ns = Netns.create("ztpd")
        self.pods[label] = pod = Pod(label, address, ns, f"p{index}")
        veth("eth0", pod.gw_dev, ns, self.gateway)
        ns.run(["ip", "-6", "addr", "add", f"{address}/128", "dev", "eth0", "nodad"])
        self.gateway.run(["ip", "-6", "addr", "add", "fe80::1/64", "dev", pod.gw_dev, "nodad"])
        ns.run(["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])
        self.gateway.run(["ip", "-6", "route", "add", f"{address}/128", "dev", pod.gw_dev])
        return pod

    def start_server(self, label: str | None = None) -> None:
        """The echo server: in the internet namespace on SERVER_V4, or in pod ``label`` on its IPv6 address."""
        ns, bind = (self.internet, str(SERVER_V4)) if label is None else (self.pods[label].ns, "::")
        proc = ns.popen(probe_command("serve", "--bind", bind, "--tcp", str(TCP_PORT), "--udp", str(UDP_PORT)),
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("echo server did not start")

    def probe(self, label: str | None, kind: str, target: str, port: int | None = None, timeout: float = 2.0) -> str | None:
        """Run a probe from a pod (or the internet namespace when ``label`` is None): the address the
        server saw (tcp/udp), the replier (ping), or None."""
        cmd = [kind, target]
        if kind != "ping":
            cmd.append(str(port if port is not None else (TCP_PORT if kind == "tcp" else UDP_PORT)))
        cmd += ["--timeout", str(timeout)]
        ns = self.internet if label is None else self.pods[label].ns
        proc = ns.run(probe_command(*cmd), check=False, timeout=timeout * 4 + 10)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def close(self) -> None:
        for proc in self._procs:
            kill_pid(proc.pid)
        self._procs.clear()
        for pod in self.pods.values():
            pod.ns.close()
        self.gateway.close()
        self.internet.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Testbed", "Pod", "run", "SERVER_V4", "GATEWAY_V4", "UPLINK"]
