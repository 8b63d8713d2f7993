"""Creating the lab's topology for real: the OVN sandbox, the logical network, namespaces, veths, servers.

Every namespace is entered in the ledger before it is created, and every veth is created directly
inside its namespaces (``netns.veth``; pods are plugged by ``OvnSandbox.plug``), so nothing ever
appears in the root namespace, not even for a moment, and deleting the lab's namespaces removes
every link it made. The root namespace's routes, sysctls and firewall are never touched: forwarding
is switched on inside the gateway namespace only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from ..harness import probe
from ..procs import WaitTimeout, wait_until
from ..harness.netns import Netns, veth
from ..harness.ovnk import CLUSTER_ROUTER, JOIN_SUBNET, JOIN_SWITCH, batch, skeleton
from ..harness.sandbox import OvnSandbox, SandboxError
from .expect import Service
from .state import LabError, LabState
from .topology import Topology

READY_TIMEOUT = 20.0


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
    try:
        return OvnSandbox.attach(Path(state.ovn_dir))
    except SandboxError:
        raise LabError(f"{state.ovn_dir}: no OVN sandbox here; run `zonectl lab up` first") from None


def build_logical(sandbox: OvnSandbox, topo: Topology) -> None:
    """The OVN-Kubernetes-like logical network, in one NB transaction."""
    cmds = skeleton(topo.nodes)
    gw = topo.gateway
    cmds += [
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
    batch(sandbox.nbctl, cmds, size=None)


# --- namespaces and links -------------------------------------------------------------------------


def make_netns(state: LabState, name: str) -> Netns:
    state.will_create_netns(name)
    return Netns.create(name=name)


def build_pods(state: LabState, sandbox: OvnSandbox, topo: Topology) -> None:
    """Pod namespaces plugged into br-int, then wait for OVN to bind them all."""
    nodes = {n.name: n for n in topo.nodes}
    for pod in topo.pods:
        node = nodes[pod.node]
        sandbox.plug(make_netns(state, pod.netns), pod.lport, pod.mac, str(pod.address),
                     prefix_len=node.subnet.prefixlen, gateway=str(node.router_ip.ip), host_if=pod.host_if)
    gw = topo.gateway
    sandbox.plug(make_netns(state, gw.netns), gw.lsp, gw.mac, str(gw.address), prefix_len=JOIN_SUBNET.prefixlen,
                 host_if=gw.host_if)
    sandbox.wait_bound([p.lport for p in topo.pods] + [gw.lsp], READY_TIMEOUT)
    sandbox.wait_hv()


def build_uplink(state: LabState, topo: Topology, cluster: str) -> None:
    """The gateway's uplink to the IPv4 "internet" and the routes each side needs (inside their namespaces)."""
    gw, inet = topo.gateway, topo.internet
    gw_ns, inet_ns = Netns(gw.netns), make_netns(state, inet.netns)
    veth(gw.uplink_if, "eth0", gw_ns, inet_ns)
    plen = gw.uplink_net.prefixlen
    gw_ns.run(["ip", "addr", "add", f"{gw.uplink_v4}/{plen}", "dev", gw.uplink_if])
    gw_ns.run(["ip", "route", "add", "default", "via", str(inet.address)])
    gw_ns.run(["ip", "-6", "route", "add", cluster, "via", str(gw.router_address), "dev", "eth0"])
    inet_ns.run(["ip", "addr", "add", f"{inet.address}/{plen}", "dev", "eth0"])
    inet_ns.run(["ip", "addr", "add", f"{inet.site2}/32", "dev", "lo"])
    inet_ns.run(["ip", "addr", "add", f"{inet.dns}/32", "dev", "lo"])
    for v4, _ in inet.maps:  # the upstream network routes each published address to the gateway
        inet_ns.run(["ip", "route", "add", f"{v4}/32", "via", str(gw.uplink_v4)])


# --- servers --------------------------------------------------------------------------------------


def start_servers(state: LabState, topo: Topology, services: Sequence[Service]) -> None:
    """One probe server per pod and one in the internet namespace, listening on every probed port."""
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
                ["ip", "netns", "exec", ns, *probe.command("serve", "--bind", bind, "--tcp", tcp, "--udp", udp,
                                                           "--pidfile", str(pidfile))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        state.started_process(proc.pid, probe.PROGRAM, f"server {label}")
        pidfiles.append(pidfile)
    try:
        wait_until(lambda: all(pf.exists() for pf in pidfiles), READY_TIMEOUT, "the lab's servers", interval=0.02)
    except WaitTimeout:
        missing = next(pf for pf in pidfiles if not pf.exists())
        raise LabError(f"a lab server did not start: see {missing.with_suffix('.log')}") from None
