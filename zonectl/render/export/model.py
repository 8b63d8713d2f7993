"""What every firewall export is rendered from: each zone's value/mask per scope and its CIDRs per node.

Built once from the layout, the zone registry, the scopes asked for and (optionally) the node podCIDRs,
so that each vendor module is a pure text builder with no address arithmetic of its own: the masks
and the expansion come from ``core.layout`` only, and every value leaves here normalised
(value AND mask), whatever the vendor does with it.

Linear in nodes x zones, with the per-node values kept as text: a cluster of 65,536 nodes and 30 zones
is two million (zone, node) pairs, so each costs one address formatted and one small object, never a
search over the other nodes or an ``ipaddress`` object per CIDR (benchmarks/export_scale.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv6Network
from typing import Iterable, Iterator, NamedTuple

from ...core.errors import ValidationError
from ...core.layout import AddrMatch, Layout, Scope, SCOPES, ipv6_text
from ...core.zones import Zone, ZoneRegistry
from .. import checks


@dataclass(frozen=True)
class ScopeMatch:
    """One zone in one scope: the single wildcard value/mask that selects all of its pods."""

    scope: Scope
    match: AddrMatch


class NodeCidrs(NamedTuple):
    """One zone on one node, as text: the node's podCIDR, the zone's value/mask there and the plain CIDRs
    that cover exactly that (``value`` is the zone on the node, normalised; ``cidrs`` in address order)."""

    node: str
    value: str
    mask: str
    cidrs: tuple[str, ...]

    @property
    def match(self) -> str:
        return f"{self.value}/{self.mask}"


@dataclass(frozen=True)
class ZoneExport:
    zone: Zone
    matches: tuple[ScopeMatch, ...]


@dataclass(frozen=True)
class ExportData:
    """Everything an export needs; ``nodes`` is None when no node CIDRs were given.

    The zones on the nodes are derived, while rendering, from what is checked here (the layout, the zone
    ids, the node list): nothing per (zone, node) is stored, or could be of the wrong form."""

    layout: Layout
    scopes: tuple[Scope, ...]
    zones: tuple[ZoneExport, ...]
    nodes: tuple[IPv6Network, ...] | None = None

    def __post_init__(self) -> None:
        """Every zone name, id, match and node CIDR in the form the vendor formats write (checked once here,
        since every format renders from this object)."""
        if not isinstance(self.layout, Layout):
            raise checks.refuse("layout", self.layout, "is not a Layout")
        for s in self.scopes:
            checks.one_of(s, SCOPES, "scope")
        nodes = self.nodes or ()
        for n in nodes:
            self.layout.check_node(checks.ipv6_net(n, "node"))
        if len(set(nodes)) != len(nodes) or list(nodes) != sorted(nodes):
            raise checks.refuse("nodes", nodes, "are not sorted and unique")
        for z in self.zones:
            if not isinstance(z, ZoneExport) or not isinstance(z.zone, Zone):
                raise checks.refuse("zone", z, "is not a ZoneExport")
            checks.name(z.zone.name, "zone")
            checks.integer(z.zone.id, f"zone {z.zone.name} id", 0, self.layout.max_zone_id)
            self.layout.check_expansion(z.zone.id, len(nodes))
            for m in z.matches:
                checks.one_of(m.scope, SCOPES, f"zone {z.zone.name} scope")
                checks.match(m.match, f"zone {z.zone.name} match")

    @property
    def has_nodes(self) -> bool:
        return self.nodes is not None

    @cached_property
    def node_values(self) -> tuple[int, ...]:
        return tuple(int(n.network_address) for n in self.nodes or ())

    @cached_property
    def node_texts(self) -> tuple[str, ...]:
        """``str(node)`` of every node, formatted once for all zones."""
        return tuple(f"{ipv6_text(v)}/{n.prefixlen}" for v, n in zip(self.node_values, self.nodes or (), strict=True))

    def on_nodes(self, z: ZoneExport) -> Iterator[NodeCidrs]:
        """The zone on each node, in node order (nothing without nodes)."""
        layout = self.layout
        mask = ipv6_text(layout.node_mask | layout.field_mask)
        suffix = f"/{layout.expanded_length}"
        text = ipv6_text
        for node, cidrs in zip(self.node_texts, layout.expand_by_node(z.zone.id, self.node_values), strict=True):
            value = text(cidrs[0])
            yield NodeCidrs(node, value, mask, (value + suffix,) if len(cidrs) == 1 else
                            tuple(text(c) + suffix for c in cidrs))

    def node_cidrs(self, z: ZoneExport) -> list[tuple[str, str]]:
        """(node, CIDR) for every CIDR of the zone on the nodes, in node order: what ``on_nodes`` lists, without
        the rest (the CIDR formats' lines need no more)."""
        suffix = f"/{self.layout.expanded_length}"
        text = ipv6_text
        expanded = self.layout.expand_by_node(z.zone.id, self.node_values)
        return [(node, text(c) + suffix) for node, cidrs in zip(self.node_texts, expanded, strict=True) for c in cidrs]

    def cidrs(self, z: ZoneExport) -> list[str]:
        """Every CIDR of the zone on the nodes, in node order."""
        return [c for _, c in self.node_cidrs(z)]


def default_scopes(layout: Layout) -> tuple[Scope, ...]:
    """Cluster, plus datacenter when the layout has a datacenter prefix."""
    return ("cluster", "datacenter") if layout.datacenter is not None else ("cluster",)


def build(
    registry: ZoneRegistry,
    scopes: Iterable[Scope] | None = None,
    nodes: Iterable[IPv6Network | str] | None = None,
) -> ExportData:
    """Compute every zone's matches and check the node list, or raise ValidationError before anything is
    rendered (the expansion limit included)."""
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
    zones = tuple(ZoneExport(zone, tuple(ScopeMatch(s, layout.zone_match(zone.id, s)) for s in wanted))
                  for zone in registry)
    return ExportData(layout, wanted, zones, node_list)


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

