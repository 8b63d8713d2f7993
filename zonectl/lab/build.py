"""Creating the lab's topology for real: the OVN sandbox, the logical network, namespaces, veths, servers.

Every namespace is entered in the ledger before it is created, and every veth is created directly
inside its namespaces (``ip link add A netns X type veth peer name B netns Y``), so nothing ever
appears in the root namespace, not even for a moment, and deleting the lab's namespaces removes
every link it made. The root namespace's routes, sysctls and firewall are never touched: forwarding
is switched on inside the gateway namespace only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Sequence

from ..netns import Netns, run
from ..ovn.sandbox import OvnSandbox, wait_until
from .expect import Service
from .state import LabError, LabState
from .topology import CLUSTER_ROUTER, JOIN_SUBNET, JOIN_SWITCH, Topology

AGENT = Path(__file__).with_name("agent.py")
READY_TIMEOUT = 20.0


def ns_run(ns: str, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)


# --- OVN ------------------------------------------------------------------------------------------


def start_ovn(state: LabState) -> OvnSandbox:
    """Start NB/SB, northd and one chassis (userspace datapath) in ``<state>/ovn``."""
    ovn_dir = state.state_dir / "ovn"
    state.ovn_dir = str(ovn_dir)
    state.save()
    sandbox = OvnSandbox(state_dir=ovn_dir, chassis=True, name=f"zl{state.lab_id}")
    sandbox.start()
    return sandbox


def attach_ovn(state: LabState) -> OvnSandbox:
    """A handle on the running sandbox of ``lab up`` (for test/sync/down, which are new processes)."""
    ovn_dir = Path(state.ovn_dir)
    sandbox = OvnSandbox(state_dir=ovn_dir, chassis=True, name=f"zl{state.lab_id}")
    ns_file = ovn_dir / "netns"
    if not ns_file.exists():
        raise LabError(f"{ovn_dir}: no OVN sandbox here; run `zonectl lab up` first")
    sandbox.chassis_ns = Netns(ns_file.read_text().split()[0])
    return sandbox


def chassis_netns(sandbox: OvnSandbox) -> str:
    if sandbox.chassis_ns is None:
        raise LabError("the OVN sandbox has no chassis")
    return sandbox.chassis_ns.name


def build_logical(sandbox: OvnSandbox, topo: Topology) -> None:
    """The OVN-Kubernetes-like logical network, in one NB transaction."""
    cmds: list[list[str]] = [["lr-add", CLUSTER_ROUTER]]
    for node in topo.nodes:
        cmds += [
            ["ls-add", node.switch],
            # OVN-Kubernetes marks node switches so; zonectl's OVN backend finds them by it.
            ["set", "Logical_Switch", node.switch, f"other_config:ipv6_prefix={node.subnet.network_address}"],
            ["lrp-add", CLUSTER_ROUTER, node.router_port, node.router_mac, str(node.router_ip)],
            ["lsp-add", node.switch, node.switch_port],
            ["lsp-set-type", node.switch_port, "router"],
            ["lsp-set-addresses", node.switch_port, "router"],
            ["lsp-set-options", node.switch_port, f"router-port={node.router_port}"],
        ]
    gw = topo.gateway
    join_rp, join_sp = f"rtoj-{CLUSTER_ROUTER}", f"jtor-{CLUSTER_ROUTER}"
    cmds += [
        ["ls-add", JOIN_SWITCH],
        ["lrp-add", CLUSTER_ROUTER, join_rp, "0a:58:fd:98:00:01", f"{gw.router_address}/{JOIN_SUBNET.prefixlen}"],
        ["lsp-add", JOIN_SWITCH, join_sp],
        ["lsp-set-type", join_sp, "router"],
        ["lsp-set-addresses", join_sp, "router"],
        ["lsp-set-options", join_sp, f"router-port={join_rp}"],
        # The gateway port carries every NAT64 destination, so no IP port security on it (MAC only).
        ["lsp-add", JOIN_SWITCH, gw.lsp],
        ["lsp-set-addresses", gw.lsp, f"{gw.mac} {gw.address}"],
        ["lsp-set-port-security", gw.lsp, gw.mac],
        ["lr-route-add", CLUSTER_ROUTER, str(topo.nat64_prefix), str(gw.address)],
    ]
    for pod in topo.pods:
        cmds += [
            ["lsp-add", pod.node, pod.lport],
            ["lsp-set-addresses", pod.lport, f"{pod.mac} {pod.address}"],
            ["lsp-set-port-security", pod.lport, f"{pod.mac} {pod.address}"],
            ["set", "Logical_Switch_Port", pod.lport,
             f"external_ids:namespace={pod.namespace}", "external_ids:pod=true",
             f"external_ids:zonectl-lab-zone={pod.zone}"],
        ]
    args: list[str] = []
    for c in cmds:
        args += (["--"] if args else []) + c
    sandbox.nbctl(*args)


# --- namespaces and links -------------------------------------------------------------------------


def make_netns(state: LabState, name: str) -> None:
    state.will_create_netns(name)
    run(["ip", "netns", "add", name])
    ns_run(name, ["ip", "link", "set", "lo", "up"])


def veth_between(a: str, ns_a: str, b: str, ns_b: str) -> None:
    """A veth pair created directly inside its two namespaces, tx checksum offload off on both ends
    (the userspace datapath and Tayga's TUN never fill a checksum veth left to the NIC)."""
    run(["ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b])
    for dev, ns in ((a, ns_a), (b, ns_b)):
        ns_run(ns, ["ethtool", "-K", dev, "tx", "off"], check=False)


def _plug(chassis: str, ns: str, host_if: str, mac: str, address: IPv6Address, prefix_len: int,
          gateway: IPv6Address | None) -> None:
    veth_between(host_if, chassis, "eth0", ns)
    ns_run(chassis, ["ip", "link", "set", host_if, "up"])
    for key in ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.eth0.accept_dad=0"):
        ns_run(ns, ["sysctl", "-qw", key])
    ns_run(ns, ["ip", "link", "set", "eth0", "address", mac])
    ns_run(ns, ["ip", "link", "set", "eth0", "up"])
    ns_run(ns, ["ip", "-6", "addr", "add", f"{address}/{prefix_len}", "dev", "eth0", "nodad"])
    if gateway is not None:
        ns_run(ns, ["ip", "-6", "route", "add", "default", "via", str(gateway), "dev", "eth0"])


def build_pods(state: LabState, sandbox: OvnSandbox, topo: Topology) -> None:
    """Pod namespaces on br-int (one OVS transaction for all ports), then wait for OVN to bind them."""
    chassis = chassis_netns(sandbox)
    nodes = {n.name: n for n in topo.nodes}
    ports: list[str] = []
    for pod in topo.pods:
        node = nodes[pod.node]
        make_netns(state, pod.netns)
        _plug(chassis, pod.netns, pod.host_if, pod.mac, pod.address, node.subnet.prefixlen, node.router_ip.ip)
        ports += _add_port_args(pod.host_if, pod.lport)
    gw = topo.gateway
    make_netns(state, gw.netns)
    _plug(chassis, gw.netns, gw.host_if, gw.mac, gw.address, JOIN_SUBNET.prefixlen, None)
    ports += _add_port_args(gw.host_if, gw.lsp)
    sandbox.vsctl(*ports[1:])
    lports = [p.lport for p in topo.pods] + [gw.lsp]
    wait_until(lambda: _all_bound(sandbox, lports), READY_TIMEOUT, "OVN port bindings of the lab pods")
    sandbox.wait_hv()


def _add_port_args(host_if: str, lport: str) -> list[str]:
    return ["--", "add-port", "br-int", host_if, "--", "set", "Interface", host_if, f"external_ids:iface-id={lport}"]


def _all_bound(sandbox: OvnSandbox, lports: list[str]) -> bool:
    out = sandbox.sbctl("--bare", "--columns=logical_port,chassis", "find", "Port_Binding", "chassis!=[]")
    bound = set(out.split())
    return all(lp in bound for lp in lports)


def build_uplink(state: LabState, topo: Topology, cluster: str) -> None:
    """The gateway's uplink to the IPv4 "internet" and the routes each side needs (inside their namespaces)."""
    gw, inet = topo.gateway, topo.internet
    make_netns(state, inet.netns)
    veth_between(gw.uplink_if, gw.netns, "eth0", inet.netns)
    plen = gw.uplink_net.prefixlen
    ns_run(gw.netns, ["ip", "addr", "add", f"{gw.uplink_v4}/{plen}", "dev", gw.uplink_if])
    ns_run(gw.netns, ["ip", "link", "set", gw.uplink_if, "up"])
    ns_run(gw.netns, ["ip", "route", "add", "default", "via", str(inet.address)])
    ns_run(gw.netns, ["ip", "-6", "route", "add", cluster, "via", str(gw.router_address), "dev", "eth0"])
    ns_run(inet.netns, ["ip", "addr", "add", f"{inet.address}/{plen}", "dev", "eth0"])
    ns_run(inet.netns, ["ip", "link", "set", "eth0", "up"])
    ns_run(inet.netns, ["ip", "addr", "add", f"{inet.site2}/32", "dev", "lo"])


# --- servers --------------------------------------------------------------------------------------


def start_servers(state: LabState, topo: Topology, services: Sequence[Service]) -> None:
    """One agent per pod and one in the internet namespace, listening on every probed port."""
    tcp = ",".join(str(s.port) for s in services if s.proto == "tcp")
    udp = ",".join(str(s.port) for s in services if s.proto == "udp")
    logs = state.state_dir / "logs"
    logs.mkdir(exist_ok=True)
    targets = [(p.netns, "::", p.name) for p in topo.pods] + [(topo.internet.netns, ",".join(map(str, topo.internet.targets)), "internet")]
    pidfiles: list[Path] = []
    for ns, bind, label in targets:
        pidfile = logs / f"server-{label}.pid"
        pidfile.unlink(missing_ok=True)
        with open(logs / f"server-{label}.log", "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, str(AGENT), "serve", "--bind", bind,
                 "--tcp", tcp, "--udp", udp, "--pidfile", str(pidfile)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        state.started_process(proc.pid, AGENT.name, f"server {label}")
        pidfiles.append(pidfile)
    deadline = time.monotonic() + READY_TIMEOUT
    for pf in pidfiles:
        while not pf.exists():
            if time.monotonic() > deadline:
                raise LabError(f"a lab server did not start: see {pf.with_suffix('.log')}")
            time.sleep(0.02)
