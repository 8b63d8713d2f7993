"""Reading NB state from the ovsdbapp cache: node switches, and the ACL rows zonectl owns.

Only rows carrying ``k8s.ovn.org/owner-controller = <our controller>`` and a zonectl key are ever
treated as ours; everything else (OVN-Kubernetes' ACLs, port groups, address sets) is read-only here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Iterable, Mapping

from zonectl.render.ovn_match import OWNER_CONTROLLER_KEY, acl_key

ACL_COLUMNS = ("direction", "priority", "match", "action", "name", "external_ids", "tier", "log", "severity", "meter",
               "label", "options")


# OVN-Kubernetes' names and keys for switches that are not default-network node switches
# (go-controller/pkg/types/const.go): zonectl's rows never go there, whatever their other_config says.
NETWORK_KEY = "k8s.ovn.org/network"  # set on every switch of a user-defined network (UDN), absent on the default's
TOPOLOGY_KEY = "k8s.ovn.org/topology"  # likewise (layer3, layer2, localnet)
RESERVED_SWITCHES = {
    "join": "OVN-K's join switch (gateway routers)",
    "transit_switch": "OVN-K's interconnect transit switch",
    "ovn_layer2_switch": "a layer2 network's switch",
    "ovn_localnet_switch": "a localnet network's switch",
}
RESERVED_PREFIXES = (("join_", "a join switch"), ("ext_", "a gateway router's external switch"),
                     ("exgw-", "an external gateway switch"))
RESERVED_SUFFIXES = (("_ovn_layer2_switch", "a layer2 user-defined network's switch"),
                     ("_ovn_localnet_switch", "a localnet network's switch"))
OVN_IPV6_PREFIX_LEN = 64  # OVN reads other_config:ipv6_prefix as a /64


def reserved(row: Any) -> str | None:
    """Why ``row`` is an OVN-K switch that is not a default-network node switch (None: it may be one)."""
    ids = row.external_ids or {}
    network = ids.get(NETWORK_KEY)
    if (network is not None and network != "default") or TOPOLOGY_KEY in ids:
        return f"a switch of user-defined network {network or ids.get(TOPOLOGY_KEY)!r} ({NETWORK_KEY})"
    name = row.name
    if name in RESERVED_SWITCHES:
        return RESERVED_SWITCHES[name]
    for prefix, what in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"{what} ({prefix}*)"
    for suffix, what in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"{what} (*{suffix})"
    return None


@dataclass(frozen=True)
class SwitchSelector:
    """Which logical switches are node switches (and carry zonectl's rows).

    Default: every switch whose ``other_config:ipv6_prefix`` (set by OVN-Kubernetes on node switches) lies in
    the cluster prefix. ``names`` pins an explicit list instead. Never selected, even by name: OVN-K's other
    switches (``reserved``: user-defined networks, join, transit, external). ``node_port_prefix`` names the
    management port of switch ``<node>``: exactly ``<prefix><node>`` (``k8s-<node>``), whose traffic to pods
    is exempt, as OVN-K's own allow-from-node ACL is. Exactly: a pod's port is ``<namespace>_<pod>``, so a
    prefix match would exempt every pod of a namespace named ``k8s-...``.
    """

    cluster: IPv6Network | None = None
    names: tuple[str, ...] | None = None
    node_port_prefix: str = "k8s-"
    names_must_exist: bool = True  # central NB: every named switch is there; interconnect: one node's NB
    zone_offset: int | None = None  # the layout's zone field (first bit), to check each switch's pod subnet

    def selects(self, row: Any) -> bool:
        return self.reason(row) is None

    def reason(self, row: Any) -> str | None:
        """Why ``row`` is not a node switch zonectl writes to; None when it is one."""
        why = reserved(row)
        if why is not None:
            return why
        if self.names is not None:
            return None if row.name in self.names else "not listed in ovn.switches"
        prefix = (row.other_config or {}).get("ipv6_prefix")
        if not prefix:
            return "no other_config:ipv6_prefix (OVN-K sets it on node switches)"
        if self.cluster is None:
            return "no cluster prefix to match its ipv6_prefix against"
        try:
            addr = ipaddress.IPv6Address(prefix.split("/")[0])
        except ValueError:
            return f"other_config:ipv6_prefix {prefix!r} is not an IPv6 address"
        if addr not in self.cluster:
            return f"ipv6_prefix {addr} is outside layout.cluster {self.cluster}"
        return None

    def node_port(self, switch: str) -> str | None:
        return f"{self.node_port_prefix}{switch}" if self.node_port_prefix else None


@dataclass(frozen=True)
class SwitchInfo:
    name: str
    uuid: Any
    router_ports: tuple[str, ...]
    node_ports: tuple[str, ...]
    subnet: IPv6Network | None = None  # the pods' subnet: the cluster router's port (rtos-<node>), else ipv6_prefix/64


@dataclass
class OwnedAcl:
    """An ACL row zonectl owns, as read: its identity key, columns, and the switches that reference it."""

    uuid: Any
    key: str | None
    columns: dict[str, Any]
    switches: set[str] = field(default_factory=set)

    @property
    def external_ids(self) -> Mapping[str, str]:
        return self.columns.get("external_ids", {})


def _plain(value: Any) -> Any:
    """IDL column values -> plain Python (lists for optional scalars become scalar or None)."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return value[0] if len(value) == 1 else (None if not value else list(value))
    return value


def acl_columns(row: Any, schema_columns: Iterable[str]) -> dict[str, Any]:
    return {c: _plain(getattr(row, c)) for c in ACL_COLUMNS if c in schema_columns}


def node_switches(tables: Mapping[str, Any], selector: SwitchSelector) -> list[SwitchInfo]:
    out: list[SwitchInfo] = []
    lrps = tables.get("Logical_Router_Port")
    router_nets = {lrp.name: list(lrp.networks) for lrp in lrps.rows.values()} if lrps is not None else {}
    for sw in tables["Logical_Switch"].rows.values():
        if not selector.selects(sw):
            continue
        node_port = selector.node_port(sw.name)
        routers: list[str] = []
        nodes: list[str] = []
        for port in sw.ports:
            if port.type == "router":
                routers.append(port.name)
            elif port.name == node_port:
                nodes.append(port.name)
        out.append(SwitchInfo(sw.name, sw.uuid, tuple(sorted(routers)), tuple(sorted(nodes)),
                              _subnet(sw, router_nets.get(f"rtos-{sw.name}", []))))
    return sorted(out, key=lambda s: s.name)


def _subnet(sw: Any, router_networks: Iterable[str]) -> IPv6Network | None:
    """The pods' subnet of node switch ``sw``: the network of OVN-K's cluster-router port ``rtos-<node>`` that holds
    its ipv6_prefix, else ipv6_prefix as OVN reads it (a /64); None without either."""
    prefix = (sw.other_config or {}).get("ipv6_prefix")
    try:
        addr = ipaddress.IPv6Address(prefix.split("/")[0]) if prefix else None
    except ValueError:
        addr = None
    for net in router_networks:
        try:
            iface = ipaddress.ip_interface(net)
        except ValueError:
            continue
        if isinstance(iface, ipaddress.IPv6Interface) and (addr is None or addr in iface.network):
            return iface.network
    return IPv6Network((addr, OVN_IPV6_PREFIX_LEN), strict=False) if addr is not None else None


def switch_reasons(tables: Mapping[str, Any], selector: SwitchSelector) -> dict[str, str]:
    """Every switch zonectl does not write to, with the reason (for messages and ``doctor``)."""
    out: dict[str, str] = {}
    for sw in tables["Logical_Switch"].rows.values():
        why = selector.reason(sw)
        if why is not None:
            out[sw.name] = why
    return dict(sorted(out.items()))


def is_owned(external_ids: Mapping[str, str], controller: str) -> bool:
    return external_ids.get(OWNER_CONTROLLER_KEY) == controller and any(k.startswith("zonectl.io/") for k in external_ids)


def owned_acls(tables: Mapping[str, Any], controller: str) -> list[OwnedAcl]:
    """Every ACL row zonectl owns, with the names of the switches referencing it."""
    acl_table = tables["ACL"]
    cols = acl_table.columns.keys()
    owned: dict[Any, OwnedAcl] = {}
    for row in acl_table.rows.values():
        ids = row.external_ids
        if is_owned(ids, controller):
            owned[row.uuid] = OwnedAcl(row.uuid, acl_key(ids), acl_columns(row, cols))
    if owned:
        for sw in tables["Logical_Switch"].rows.values():
            for acl in sw.acls:
                entry = owned.get(acl.uuid)
                if entry is not None:
                    entry.switches.add(sw.name)
    return list(owned.values())
