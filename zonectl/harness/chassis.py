"""The sandbox's chassis: ovs-vswitchd (userspace "netdev" datapath) and ovn-controller, and pods on br-int.

The chassis' ``ovs-vswitchd`` runs inside a network namespace of its own: the userspace datapath creates
tap devices named after the bridge (``br-int``) and the datapath (``ovs-netdev``), which would collide
between two sandboxes in one namespace. Inside its own namespace each sandbox has its own, so any number
of sandboxes with a chassis run side by side (tested in tests/ovn/test_sandbox.py).

Pods are network namespaces whose eth0 is one end of a veth created directly in the pod namespace, the
other end directly in the chassis namespace, plugged into br-int: no link of a sandbox ever exists in the
root namespace.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Sequence

from ..procs import wait_until
from . import netns as nslib
from . import probe
from .daemons import SandboxError
from .ovsdb import OVS_SCHEMA, Databases


@dataclass
class Pod:
    """A "pod": a network namespace whose eth0 is a veth plugged into br-int as a logical switch port."""

    lport: str
    mac: str
    ip: str
    ns: nslib.Netns
    ovs_port: str

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.ns.run(cmd, check=check, timeout=timeout)

    def ping(self, dst: str, *, count: int = 1, wait: float = 1.0) -> bool:
        """True when ``dst`` answers one of ``count`` ICMPv6 echo requests, each within ``wait`` seconds
        (``zonectl.harness.probe``, so the tests do not need iputils-ping installed)."""
        return self._probe("ping", dst, count=count, wait=wait)

    def tcp_connect(self, dst: str, port: int, *, count: int = 1, wait: float = 1.0) -> bool:
        """True when a TCP handshake to [dst]:port completes (a listener must run there, see ``tcp_listen``)."""
        return self._probe("connect", dst, str(port), count=count, wait=wait)

    def tcp_listen(self, port: int) -> subprocess.Popen:
        """Start a TCP server on [::]:port inside the pod (it answers with the peer's address and closes);
        the netns close ends it."""
        proc = self.ns.popen(probe.command("serve", "--bind", "::", "--tcp", str(port)), stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return proc

    def _probe(self, kind: str, *args: str, count: int, wait: float) -> bool:
        cmd = probe.command(kind, *args, "--timeout", str(count * wait), "--tries", str(count))
        return self.ns.run(cmd, check=False, timeout=count * wait + 15).returncode == 0


class Chassis(Databases):
    """One chassis of the sandbox, in its own network namespace, and the pods plugged into it."""

    name: str
    chassis_ns: nslib.Netns | None
    chassis_name: str
    _pods: list[Pod]

    @property
    def br_int_target(self) -> str:
        """ovs-ofctl target for br-int (its management socket lives in our rundir, not /var/run)."""
        return f"unix:{self.path('br-int.mgmt')}"

    def _start_chassis(self) -> None:
        self.chassis_name = f"{self.name}-ch"
        self.chassis_ns = nslib.Netns.create(prefix="zsch")
        self.path("netns").write_text(self.chassis_ns.name + "\n")
        self._start_db("ovs", OVS_SCHEMA)
        self.vsctl("--no-wait", "init")
        self.vsctl(
            "--no-wait", "set", "Open_vSwitch", ".",
            f"external_ids:system-id={self.chassis_name}",
            f"external_ids:hostname={self.chassis_name}",
            f"external_ids:ovn-remote={self.sb_remote}",
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge=br-int",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )
        self.vsctl(
            "--no-wait", "add-br", "br-int", "--", "set", "Bridge", "br-int",
            "datapath_type=netdev", "fail-mode=secure", "other_config:disable-in-band=true",
        )
        self._spawn(
            "vswitchd",
            ["ovs-vswitchd", f"unix:{self.path('ovs.sock')}", *self._daemon_args("vswitchd"),
             "--disable-system", "--disable-system-route"],
            netns=self.chassis_ns,
        )
        wait_until(lambda: self.path("br-int.mgmt").exists(), self.start_timeout, "br-int management socket")
        self._spawn("controller", ["ovn-controller", f"unix:{self.path('ovs.sock')}", *self._daemon_args("controller")])
        wait_until(
            lambda: self.chassis_name in self.sbctl("--bare", "--columns=name", "list", "Chassis"),
            self.start_timeout,
            "chassis registration in SB",
        )

    # ----- commands ----------------------------------------------------------------------------------

    def vsctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovs-vsctl", f"--db=unix:{self.path('ovs.sock')}", "--timeout=30", *args], timeout=timeout)

    def ofctl(self, *args: str, timeout: float = 60.0) -> str:
        """ovs-ofctl against br-int; pass the sub-command and its args, the bridge target is added."""
        cmd, *rest = args
        return self.run(["ovs-ofctl", "-O", "OpenFlow15", cmd, self.br_int_target, *rest], timeout=timeout)

    def flow_count(self) -> int:
        """OpenFlow flows on br-int (all tables), as ovs-ofctl counts them."""
        out = self.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", self.br_int_target])
        m = re.search(r"flow_count=(\d+)", out)
        if not m:
            raise SandboxError(f"unexpected dump-aggregate output: {out!r}")
        return int(m.group(1))

    def wait_hv(self, timeout: float = 60.0) -> None:
        """Block until every chassis' ovn-controller has installed the current NB contents as OpenFlow."""
        self.nbctl("--wait=hv", "sync", timeout=timeout)

    # ----- pods --------------------------------------------------------------------------------------

    def add_pod(self, switch: str, lport: str, mac: str, ip: str, *, prefix_len: int = 64, gateway: str | None = None) -> Pod:
        """Create the logical port (addresses + port security), a netns with eth0 (mac, ip) and plug it into br-int.

        Returns once ovn-controller has bound the port (``Port_Binding.chassis`` set) and flows are installed.
        """
        if self.chassis_ns is None:
            raise SandboxError("add_pod needs a sandbox started with chassis=True")
        self.nbctl(
            "--may-exist", "lsp-add", switch, lport,
            "--", "lsp-set-addresses", lport, f"{mac} {ip}",
            "--", "lsp-set-port-security", lport, f"{mac} {ip}",
        )
        pod_ns = nslib.Netns.create(prefix="zspod")
        try:
            host_end = self.plug(pod_ns, lport, mac, ip, prefix_len=prefix_len, gateway=gateway)
        except BaseException:
            pod_ns.close()
            raise
        pod = Pod(lport=lport, mac=mac, ip=ip, ns=pod_ns, ovs_port=host_end)
        self._pods.append(pod)
        self.wait_bound([lport])
        self.wait_hv()
        return pod

    def plug(self, ns: nslib.Netns, lport: str, mac: str, ip: str, *, prefix_len: int = 64,
             gateway: str | None = None, host_if: str | None = None) -> str:
        """Give ``ns`` an eth0 (``mac``, ``ip``, default route via ``gateway``) whose veth peer, in the
        chassis namespace, is a br-int port for logical port ``lport``; returns that port's name.

        Both ends are created in place (see ``netns.veth``). Does not wait for OVN: see ``wait_bound``.
        """
        if self.chassis_ns is None:
            raise SandboxError("plugging a pod needs a sandbox started with chassis=True")
        host_if = host_if or nslib.unique_name("zsv")
        # No duplicate address detection: OVN answers nothing, so addresses would stay tentative for a
        # while. Set before eth0 exists, which inherits "default".
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
        nslib.veth(host_if, "eth0", self.chassis_ns, ns, mac_b=mac)
        ns.run(["ip", "-6", "addr", "add", f"{ip}/{prefix_len}", "dev", "eth0", "nodad"])
        if gateway:
            ns.run(["ip", "-6", "route", "add", "default", "via", gateway, "dev", "eth0"])
        self.vsctl("add-port", "br-int", host_if, "--", "set", "Interface", host_if, f"external_ids:iface-id={lport}")
        return host_if

    def wait_bound(self, lports: Sequence[str], timeout: float | None = None) -> None:
        """Block until ovn-controller has bound every one of ``lports`` here (``Port_Binding.chassis`` set)."""
        def bound() -> bool:
            out = self.sbctl("--bare", "--columns=logical_port,chassis", "find", "Port_Binding", "chassis!=[]")
            return set(lports) <= set(out.split())

        wait_until(bound, timeout or self.start_timeout, f"port binding of {', '.join(lports)}")

    def remove_pod(self, pod: Pod) -> None:
        self.vsctl("--if-exists", "del-port", "br-int", pod.ovs_port)
        pod.ns.close()
        self._pods.remove(pod)
        self.nbctl("--if-exists", "lsp-del", pod.lport)
