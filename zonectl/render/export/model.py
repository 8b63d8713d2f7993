"""What every firewall export is rendered from: each zone's value/mask per scope and its CIDRs per node.

Built once from the layout, the zone registry, the scopes asked for and (optionally) the node podCIDRs,
so that each vendor module is a pure text builder with no address arithmetic of its own: the masks
and the expansion come from ``core.layout`` only, and every value leaves here normalised
(value AND mask), whatever the vendor does with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Iterable

from ...core.errors import ValidationError
from ...core.layout import AddrMatch, Layout, Scope, SCOPES
from ...core.zones import Zone, ZoneRegistry
from .. import checks


@dataclass(frozen=True)
class ScopeMatch:
    """One zone in one scope: the single wildcard value/mask that selects all of its pods."""

    scope: Scope
    match: AddrMatch


@dataclass(frozen=True)
class NodeCidrs:
    """One zone on one node: its value/mask there and the plain CIDRs that cover exactly that."""

    node: IPv6Network
    match: AddrMatch
    cidrs: tuple[IPv6Network, ...]


@dataclass(frozen=True)
class ZoneExport:
    zone: Zone
    matches: tuple[ScopeMatch, ...]
    nodes: tuple[NodeCidrs, ...] = ()

    @property
    def cidrs(self) -> tuple[IPv6Network, ...]:
        return tuple(c for n in self.nodes for c in n.cidrs)


@dataclass(frozen=True)
class ExportData:
    """Everything an export needs; ``nodes`` is None when no node CIDRs were given."""

    layout: Layout
    scopes: tuple[Scope, ...]
    zones: tuple[ZoneExport, ...]
    nodes: tuple[IPv6Network, ...] | None = None

    def __post_init__(self) -> None:
        """Every zone name, id, match and node CIDR in the form the vendor formats write (checked once here,
        since every format renders from this object)."""
        for s in self.scopes:
            checks.one_of(s, SCOPES, "scope")
        for n in self.nodes or ():
            checks.ipv6_net(n, "node")
        for z in self.zones:
            if not isinstance(z, ZoneExport) or not isinstance(z.zone, Zone):
                raise checks.refuse("zone", z, "is not a ZoneExport")
            checks.name(z.zone.name, "zone")
            checks.integer(z.zone.id, f"zone {z.zone.name} id", 0, (1 << 32) - 1)
            for m in z.matches:
                checks.one_of(m.scope, SCOPES, f"zone {z.zone.name} scope")
                checks.match(m.match, f"zone {z.zone.name} match")
            for nc in z.nodes:
                checks.ipv6_net(nc.node, f"zone {z.zone.name} node")
                checks.match(nc.match, f"zone {z.zone.name} node match")
                for c in nc.cidrs:
                    checks.ipv6_net(c, f"zone {z.zone.name} CIDR")

    @property
    def has_nodes(self) -> bool:
        return self.nodes is not None


def default_scopes(layout: Layout) -> tuple[Scope, ...]:
    """Cluster, plus datacenter when the layout has a datacenter prefix."""
    return ("cluster", "datacenter") if layout.datacenter is not None else ("cluster",)


def build(
    registry: ZoneRegistry,
    scopes: Iterable[Scope] | None = None,
    nodes: Iterable[IPv6Network | str] | None = None,
) -> ExportData:
    """Compute every zone's matches and node CIDRs, or raise ValidationError before anything is rendered."""
    layout = registry.layout
    wanted = tuple(dict.fromkeys(scopes)) if scopes is not None else default_scopes(layout)
    for scope in wanted:
        if scope not in SCOPES:
            raise ValidationError(f"unknown scope {scope!r} (cluster or datacenter)")
        if scope == "datacenter" and layout.datacenter is None:
            raise ValidationError("scope datacenter needs a datacenter prefix in the layout config (layout.datacenter)")
    if not wanted:
        raise ValidationError("no scope to export")
    node_list: tuple[IPv6Network, ...] | None = None
    if nodes is not None:
        node_list = tuple(sorted({layout.check_node(n) for n in nodes}))
        if not node_list:
            raise ValidationError("the node list is empty: no node podCIDR to expand the zones over")
    zones = []
    for zone in registry:
        matches = tuple(ScopeMatch(s, layout.zone_match(zone.id, s)) for s in wanted)
        per_node: tuple[NodeCidrs, ...] = ()
        if node_list is not None:
            # One call for all nodes, so the expansion limit applies to the whole export.
            expanded = layout.expand(zone.id, node_list)
            per_node = tuple(
                NodeCidrs(
                    node,
                    layout.node_zone_match(node, zone.id),
                    tuple(c for c in expanded if c.subnet_of(node)),
                )
                for node in node_list
            )
        zones.append(ZoneExport(zone, matches, per_node))
    return ExportData(layout, wanted, tuple(zones), node_list)


def require_nodes(data: ExportData, vendor: str) -> None:
    """CIDR-only firewalls need node CIDRs; refuse clearly rather than emit empty groups."""
    if not data.has_nodes:
        raise ValidationError(
            f"{vendor} has no IPv6 wildcard masks: give the node podCIDRs (--nodes FILE, e.g. a "
            "`kubectl get nodes -o yaml` dump) to expand each zone into one CIDR per node"
        )


def full_address(value: int) -> str:
    """All eight hextets without compression (``0:0:0:ffff:0:ffff:ffff:ffff``): no parser can misread it."""
    return ":".join(f"{(value >> (112 - 16 * i)) & 0xFFFF:x}" for i in range(8))


def compressed(value: int) -> str:
    return str(IPv6Address(value))
