"""The lab's topology as data: nodes, pods, the egress gateway and the IPv4 "internet".

Pure (no I/O), so the plan can be printed, tested and saved before anything is created. The logical
layout follows OVN-Kubernetes (names included, so ``ovn-nbctl show`` reads like a real cluster)::

    pod ns (eth0 fd00:10:244:N:ZZZZ::K, default via fd00:10:244:N::1)
      |  veth, iface-id = <namespace>_<pod>
    logical switch <node>  --- stor-<node> / rtos-<node> (fd00:10:244:N::1/64) ---+
                                                                                 ovn_cluster_router
    logical switch join    --- jtor-ovn_cluster_router / rtoj-ovn_cluster_router (fd98::1/64)
      |  lsp "egress-gateway" (fd98::2), veth      static route  <NAT64 prefix> via fd98::2
    gateway ns: Tayga + zone filter + masquerade, uplink 198.51.100.1/24; DNS64 (CoreDNS) on fd98::2
      |  veth
    internet ns: 198.51.100.10/24, lo 192.0.2.10 (a second IPv4 site), TCP/UDP servers,
                 lo 192.0.2.53: the internet's DNS (CoreDNS: a.example, b.example, ...)

Names and inbound maps: each IPv4 site has a name the internet's DNS serves (pods resolve it through
the DNS64 server and connect by name); one pod of each zone is published to the IPv4 internet on an
address of its own (a gateway static map, 198.51.100.80 and up), which the internet routes to the gateway.

Where OVN-Kubernetes has a gateway router per node, the lab has one egress gateway behind the join
switch: in the zonectl design pod addresses leave the cluster unchanged (no SNAT), so the per-node
gateway routers would only forward; the gateway with Tayga is the part that matters. Names, addresses
and MACs of the OVN-K skeleton (nodes, routers, join) come from ``zonectl.harness.ovnk``, as in the OVN tests.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from ..core.config import Config
from ..core.errors import ValidationError
from ..core.zones import ZoneRegistry
from ..harness.ovnk import JOIN_ROUTER_IP, JOIN_SUBNET, MAC_GATEWAY, MAC_POD, Node, mac, nodes as ovnk_nodes

GATEWAY_LSP = "egress-gateway"
NO_ZONE = "no-zone"
MAX_NODES = 8
FIRST_OFFSET = 5  # IPAM offsets below it are the router (::1) and what OVN-K reserves

UPLINK_NET = IPv4Network("198.51.100.0/24")
GATEWAY_UPLINK_V4 = IPv4Address("198.51.100.1")
INTERNET_V4 = IPv4Address("198.51.100.10")
INTERNET_SITE2_V4 = IPv4Address("192.0.2.10")
INTERNET_DNS_V4 = IPv4Address("192.0.2.53")
SITE_NAMES = ("a.example", "b.example")  # the names of the two IPv4 sites
FIRST_MAP_V4 = IPv4Address("198.51.100.80")  # the first static map; one per zone after it
GATEWAY_ADDRESS = IPv6Address(int(JOIN_SUBNET.network_address) + 2)  # on the join switch; the DNS64 server too


@dataclass(frozen=True)
class PodPlan:
    """One pod: its zone (``no-zone`` = zone id 0), node, address from ``layout.encode`` and names."""

    name: str
    namespace: str
    zone: str
    zone_id: int
    node: str
    address: IPv6Address
    mac: str
    netns: str
    host_if: str  # the veth end on br-int (in the chassis namespace); <= 15 characters

    @property
    def lport(self) -> str:
        return f"{self.namespace}_{self.name}"  # OVN-Kubernetes' logical port name


@dataclass(frozen=True)
class GatewayPlan:
    netns: str
    host_if: str  # veth end on br-int
    lsp: str
    mac: str
    address: IPv6Address  # on the join switch
    router_address: IPv6Address  # rtoj-ovn_cluster_router, the gateway's route back to the pods
    uplink_if: str
    uplink_v4: IPv4Address
    uplink_net: IPv4Network


@dataclass(frozen=True)
class InternetPlan:
    netns: str
    address: IPv4Address
    site2: IPv4Address  # a second IPv4 network (on lo), reached via ``address``
    dns: IPv4Address = INTERNET_DNS_V4  # the internet's DNS server (on lo), the DNS64 server's upstream
    names: tuple[tuple[str, IPv4Address], ...] = ()  # (name, address) the internet's DNS serves
    maps: tuple[tuple[IPv4Address, str], ...] = ()  # (IPv4 address, pod name): static maps, inbound

    @property
    def targets(self) -> tuple[IPv4Address, ...]:
        return (self.address, self.site2)


@dataclass(frozen=True)
class Topology:
    lab_id: str
    nodes: tuple[Node, ...]
    pods: tuple[PodPlan, ...]
    gateway: GatewayPlan
    internet: InternetPlan
    nat64_prefix: IPv6Network
    zones: tuple[str, ...] = field(default=())  # matrix order: zones by id, then no-zone

    def netns_names(self) -> list[str]:
        return [p.netns for p in self.pods] + [self.gateway.netns, self.internet.netns]

    def pods_of(self, zone: str) -> list[PodPlan]:
        return [p for p in self.pods if p.zone == zone]

    def pod(self, name: str) -> PodPlan:
        return next(p for p in self.pods if p.name == name)

    @property
    def dns(self) -> IPv6Address:
        """The DNS64 server every pod asks: CoreDNS in the gateway namespace, on its join-switch address."""
        return self.gateway.address

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Topology":
        return cls(
            lab_id=d["lab_id"],
            nodes=tuple(Node(n["name"], n["index"], IPv6Network(n["subnet"])) for n in d["nodes"]),
            pods=tuple(
                PodPlan(**{**p, "address": IPv6Address(p["address"])}) for p in d["pods"]
            ),
            gateway=GatewayPlan(**{
                **d["gateway"],
                "address": IPv6Address(d["gateway"]["address"]),
                "router_address": IPv6Address(d["gateway"]["router_address"]),
                "uplink_v4": IPv4Address(d["gateway"]["uplink_v4"]),
                "uplink_net": IPv4Network(d["gateway"]["uplink_net"]),
            }),
            internet=InternetPlan(d["internet"]["netns"], IPv4Address(d["internet"]["address"]),
                                  IPv4Address(d["internet"]["site2"]), IPv4Address(d["internet"]["dns"]),
                                  tuple((n, IPv4Address(a)) for n, a in d["internet"]["names"]),
                                  tuple((IPv4Address(a), pod) for a, pod in d["internet"]["maps"])),
            nat64_prefix=IPv6Network(d["nat64_prefix"]),
            zones=tuple(d.get("zones") or ()),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (IPv4Address, IPv6Address, IPv4Network, IPv6Network, IPv6Interface)):
        return str(value)
    return value


def new_lab_id() -> str:
    return secrets.token_hex(2)


def plan(config: Config, registry: ZoneRegistry, *, nodes: int = 2, pods_per_zone: int = 2,
         lab_id: str | None = None) -> Topology:
    """Lay out ``nodes`` nodes and ``pods_per_zone`` pods per zone (plus the same of no zone), spread
    round-robin over the nodes so that every zone has pods on different nodes."""
    if not 2 <= nodes <= MAX_NODES:
        raise ValidationError(f"--nodes {nodes}: the lab needs 2 to {MAX_NODES} nodes")
    if not 1 <= pods_per_zone <= 4:
        raise ValidationError(f"pods per zone {pods_per_zone}: must be 1 to 4")
    if config.nat64 is None:
        raise ValidationError("the lab needs NAT64 enabled in the config (nat64.prefix)")
    layout = config.layout
    if layout.node_prefix_len != 64:
        raise ValidationError(f"the lab lays out /64 node subnets; this layout uses /{layout.node_prefix_len}")
    lab_id = lab_id or new_lab_id()
    node_list = ovnk_nodes(layout, nodes, prefix="lab-node")
    for n in node_list:
        layout.check_node(n.subnet)
    zone_list = [(z.name, z.id, (z.namespaces[0] if z.namespaces else f"{z.name}-apps")) for z in registry]
    zone_list.append((NO_ZONE, 0, "default"))
    pods: list[PodPlan] = []
    offset = FIRST_OFFSET
    for zi, (zname, zid, namespace) in enumerate(zone_list):
        for k in range(pods_per_zone):
            node = node_list[(zi + k) % nodes]
            index = len(pods)
            pods.append(PodPlan(
                name=f"{zname}-{k + 1}",
                namespace=namespace,
                zone=zname,
                zone_id=zid,
                node=node.name,
                address=layout.encode(node.subnet, zid, offset),
                mac=mac(MAC_POD, index),
                netns=f"zl{lab_id}-{zname}-{k + 1}",
                host_if=f"zl{lab_id}p{index}",
            ))
            offset += 1
    _check_spread(pods, pods_per_zone)
    gw_addr = GATEWAY_ADDRESS
    gateway = GatewayPlan(
        netns=f"zl{lab_id}-gateway",
        host_if=f"zl{lab_id}g",
        lsp=GATEWAY_LSP,
        mac=mac(MAC_GATEWAY, 1),
        address=gw_addr,
        router_address=JOIN_ROUTER_IP.ip,
        uplink_if="uplink",
        uplink_v4=GATEWAY_UPLINK_V4,
        uplink_net=UPLINK_NET,
    )
    names = tuple(zip(SITE_NAMES, (INTERNET_V4, INTERNET_SITE2_V4), strict=True))
    maps = tuple((FIRST_MAP_V4 + i, published(pods, zname).name) for i, (zname, _, _) in enumerate(zone_list[:-1]))
    internet = InternetPlan(f"zl{lab_id}-internet", INTERNET_V4, INTERNET_SITE2_V4, INTERNET_DNS_V4, names, maps)
    return Topology(lab_id, node_list, tuple(pods), gateway, internet, config.nat64.network,
                    tuple(z for z, _, _ in zone_list))


def published(pods: list[PodPlan], zone: str) -> PodPlan:
    """The zone's pod published to the IPv4 internet: its last, so the matrix's sources (each zone's first
    pod) leave by their zone's egress (a mapped pod may leave with its mapped address: Tayga maps both ways)."""
    return [p for p in pods if p.zone == zone][-1]


def _check_spread(pods: list[PodPlan], per_zone: int) -> None:
    """With two or more pods per zone, each zone must span two nodes (so the matrix crosses nodes)."""
    if per_zone < 2:
        return
    by_zone: dict[str, set[str]] = {}
    for p in pods:
        by_zone.setdefault(p.zone, set()).add(p.node)
    for zone, nodes in by_zone.items():
        if len(nodes) < 2:
            raise AssertionError(f"zone {zone} placed on one node only: {nodes}")
