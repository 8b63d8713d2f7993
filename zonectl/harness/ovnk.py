"""OVN-Kubernetes' logical layout, for the OVN tests, the benchmark and the lab: its names, addresses and
MACs, and the ovn-nbctl commands of the skeleton every OVN-Kubernetes cluster has::

    logical switch <node> --- stor-<node> / rtos-<node> (<podCIDR>::1) ---+
                                                                         ovn_cluster_router
    logical switch join   --- jtor-ovn_cluster_router / rtoj-ovn_cluster_router (fd98::1/64)

Node switches carry ``other_config:ipv6_prefix`` (their podCIDR), as OVN-K sets it; zonectl's OVN backend
finds node switches by it. What a cluster adds on top (management ports, gateway routers, pods and OVN-K's
own policy rows in ``testbed``; the egress gateway and pod namespaces in ``zonectl.lab``) is the caller's.
Commands are lists of ovn-nbctl arguments; ``batch`` runs many of them in few transactions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Callable, Iterable, Sequence

from zonectl.core.layout import Layout

NbCtl = Callable[..., str]

CLUSTER_ROUTER = "ovn_cluster_router"
JOIN_SWITCH = "join"
JOIN_SUBNET = IPv6Network("fd98::/64")  # OVN-Kubernetes' default IPv6 join subnet
JOIN_ROUTER_PORT = f"rtoj-{CLUSTER_ROUTER}"
JOIN_SWITCH_PORT = f"jtor-{CLUSTER_ROUTER}"
JOIN_ROUTER_IP = IPv6Interface((int(JOIN_SUBNET.network_address) + 1, JOIN_SUBNET.prefixlen))

# mac() kinds: one per sort of port, so that no two ports share a MAC
MAC_NODE_ROUTER, MAC_POD, MAC_GATEWAY, MAC_MGMT, MAC_GR_JOIN, MAC_JOIN_ROUTER = 0x00, 0x01, 0x02, 0x03, 0x04, 0x98


def mac(kind: int, index: int) -> str:
    """A locally administered MAC (0a:58, as OVN-Kubernetes uses), unique per kind and index (< 65536)."""
    return f"0a:58:fd:{kind:02x}:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


def q(text: str) -> str:
    """An OVSDB string literal for ovn-nbctl's generic commands (match strings contain quotes)."""
    return json.dumps(text)


@dataclass(frozen=True)
class Node:
    """A Kubernetes node as OVN-K lays it out: a logical switch named after it on the cluster router."""

    name: str
    index: int  # 1, 2, ...
    subnet: IPv6Network  # the node's podCIDR

    @property
    def switch(self) -> str:
        return self.name

    @property
    def router_port(self) -> str:
        """The cluster router's port on this node's switch."""
        return f"rtos-{self.name}"

    @property
    def switch_port(self) -> str:
        """The switch's port (type router) facing the cluster router."""
        return f"stor-{self.name}"

    @property
    def router_ip(self) -> IPv6Interface:
        """The pods' default gateway (``::1`` of the podCIDR), with the podCIDR's length."""
        return IPv6Interface((int(self.subnet.network_address) + 1, self.subnet.prefixlen))

    @property
    def router_mac(self) -> str:
        return mac(MAC_NODE_ROUTER, self.index)

    @property
    def mgmt_port(self) -> str:
        """The node's management port (host networking, kubelet probes)."""
        return f"k8s-{self.name}"

    @property
    def mgmt_ip(self) -> IPv6Address:
        return self.subnet.network_address + 2

    @property
    def mgmt_mac(self) -> str:
        return mac(MAC_MGMT, self.index)


def nodes(layout: Layout, count: int, prefix: str = "node") -> tuple[Node, ...]:
    """``count`` nodes named ``<prefix>1``... with the cluster's node subnets 1, 2, ... as podCIDRs."""
    base = int(layout.cluster.network_address)
    step = 1 << (128 - layout.node_prefix_len)
    return tuple(Node(f"{prefix}{i}", i, IPv6Network((base + i * step, layout.node_prefix_len)))
                 for i in range(1, count + 1))


def router_link(switch: str, switch_port: str, router_port: str) -> list[str]:
    """A switch port of type router: the switch's side of ``router_port``."""
    return ["lsp-add", switch, switch_port, "--", "lsp-set-type", switch_port, "router", "--",
            "lsp-set-addresses", switch_port, "router", "--", "lsp-set-options", switch_port,
            f"router-port={router_port}"]


def skeleton(node_list: Iterable[Node], *, join: bool = True) -> list[list[str]]:
    """The cluster router, every node switch on it and (``join``) the join switch."""
    cmds: list[list[str]] = [["lr-add", CLUSTER_ROUTER]]
    for node in node_list:
        cmds += [
            ["ls-add", node.switch, "--", "set", "Logical_Switch", node.switch,
             f"other_config:ipv6_prefix={node.subnet.network_address}"],
            ["lrp-add", CLUSTER_ROUTER, node.router_port, node.router_mac, str(node.router_ip)],
            router_link(node.switch, node.switch_port, node.router_port),
        ]
    if join:
        cmds += [
            ["ls-add", JOIN_SWITCH],
            ["lrp-add", CLUSTER_ROUTER, JOIN_ROUTER_PORT, mac(MAC_JOIN_ROUTER, 1), str(JOIN_ROUTER_IP)],
            router_link(JOIN_SWITCH, JOIN_SWITCH_PORT, JOIN_ROUTER_PORT),
        ]
    return cmds


def batch(nbctl: NbCtl, commands: Iterable[Sequence[str]], size: int | None = 400) -> None:
    """Run many ovn-nbctl commands, ``size`` per process and transaction (None: all in one)."""
    chunk: list[str] = []
    n = 0
    for cmd in commands:
        if chunk:
            chunk.append("--")
        chunk.extend(cmd)
        n += 1
        if size is not None and n >= size:
            nbctl(*chunk)
            chunk, n = [], 0
    if chunk:
        nbctl(*chunk)
