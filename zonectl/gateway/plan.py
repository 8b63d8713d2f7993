"""The gateway's desired state, computed without I/O from config + zones + compiled rules.

Why a separate pure step: everything that can be wrong with the input (a bad pool, a Tayga
directive the installed version rejects, overlapping zone pools) is found here, before anything on
the host is touched, so a bad config or policy leaves the previous rules and Tayga running.

Per-zone IPv4 egress: a zone with ``egress.pool`` gets its own Tayga instance (own TUN, pool,
data-dir); packets from the zone's mask to the NAT64 prefix are marked in PREROUTING, a policy
rule sends the mark to a table whose NAT64 route points at that TUN, and the pool is SNATed to the
zone's egress address. Return traffic finds its way back by the (disjoint) pool address alone.

Beyond one core: Tayga translates in one thread, so the shared pool (``tayga.instances``) and each
zone's pool (``tayga.zoneInstances``) may be served by several Tayga processes, each with its own
slice of the pool and its own TUN, behind one ECMP route of the NAT64 prefix. The kernel hashes each
packet onto one of them (``tayga.hash``: by source address, so a pod keeps one instance and one pool
address, or by flow); replies find their slice by address. The NAT is per pool, not per slice, so a
zone still leaves from its one egress address whatever instance translated it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import PurePosixPath

from ..core.errors import Collector, ValidationError
from ..core.layout import AddrMatch
from ..core.nat64 import Nat64Prefix
from ..core.rules import Rule, RuleSet
from ..core.zones import ZoneRegistry
from ..render import ip6tables, nftables
from ..render.tayga import TaygaConfig, TaygaVersion, default_ipv4_addr, render as render_tayga
from .config import GatewayConfig, check_zone_egress

MAIN_TABLE = 254
SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
)
# How the kernel spreads the NAT64 prefix over several Tayga instances (IPv6 multipath hash, per netns):
# policy 3 hashes the fields listed: 1 (0x01) the source address only; 55 (0x37) source and destination
# address, protocol, ports. Not policy 1 (L4): it reuses a hash the packet already carries, which for a
# packet from a local socket (or through a veth) is the socket's, and TCP draws a new one on a
# retransmission timeout: the flow would move to another instance, another IPv4 source, and be reset.
HASH_SYSCTLS = {
    "source": (("net.ipv6.fib_multipath_hash_policy", "3"), ("net.ipv6.fib_multipath_hash_fields", "1")),
    "flow": (("net.ipv6.fib_multipath_hash_policy", "3"), ("net.ipv6.fib_multipath_hash_fields", "55")),
}
ECMP_VIA = "fe80::64"  # IPv6 multipath needs a gateway per next hop; a TUN has no neighbours, any will do


@dataclass(frozen=True, order=True)
class RouteSpec:
    """A route zonectl owns: destination via a device (optionally a gateway) in a table."""

    dst: str
    dev: str  # "" for an ECMP route
    table: int = MAIN_TABLE
    gateway: str | None = None
    ecmp: tuple[str, ...] = ()  # devices of an ECMP route, sorted (each "via ECMP_VIA dev D")

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.dst else socket.AF_INET

    def describe(self) -> str:
        where = f"dev {self.dev}" if not self.ecmp else f"ECMP over {', '.join(self.ecmp)}"
        return f"{self.dst} {where}" + (f" table {self.table}" if self.table != MAIN_TABLE else "")


def prefix_route(dst: str, tuns: list[str], table: int = MAIN_TABLE) -> RouteSpec:
    """A route over one TUN, or an ECMP route over several."""
    if len(tuns) == 1:
        return RouteSpec(dst, tuns[0], table)
    return RouteSpec(dst, "", table, ECMP_VIA, tuple(sorted(tuns)))


@dataclass(frozen=True, order=True)
class RuleSpec:
    """A policy-routing rule zonectl owns: ``fwmark mark/mask lookup table`` at ``priority``."""

    priority: int
    fwmark: int
    mask: int
    table: int
    family: int = socket.AF_INET6


@dataclass(frozen=True)
class TaygaInstance:
    """One Tayga process: the shared one, or one per zone with an IPv4 pool of its own."""

    name: str  # "shared" or the zone name
    tun: str
    pool: IPv4Network
    conf: TaygaConfig
    conf_text: str
    zone: str | None = None
    snat_to: IPv4Address | None = None  # None: masquerade to the uplink address
    mark: int | None = None
    table: int | None = None


@dataclass(frozen=True)
class GatewayPlan:
    """Everything the gateway makes true on the host, as plain values (compared, diffed, rendered)."""

    nat64: AddrMatch
    instances: tuple[TaygaInstance, ...]
    gateway_rules: tuple[Rule, ...]
    zones: tuple[ip6tables.ZoneMatch, ...]
    marks: tuple[ip6tables.ZoneMark, ...]
    nat_text: str
    routes: frozenset[RouteSpec]
    policy_rules: frozenset[RuleSpec]
    uplink: str
    uplink_addresses: tuple[str, ...]  # zones' egress addresses, as addr/32 on the uplink
    sysctls: tuple[tuple[str, str], ...] = SYSCTLS
    rule_ids: frozenset[str] = field(default_factory=frozenset)
    ingress: tuple[AddrMatch, ...] = ()  # IPv6 side of static maps: their replies are accepted
    filter_backend: str = "nftables"  # gateway.filter: which backend enforces the zone filter

    def ip6tables_text(self, jumps: tuple[str, ...] = ("FORWARD", "PREROUTING"), stale_chains: tuple[str, ...] = ()) -> str:
        return ip6tables.render_restore(self.gateway_rules, self.nat64, self.zones, self.marks, jumps=jumps,
                                        stale_chains=stale_chains, ingress=self.ingress)

    def filter_chains(self) -> tuple[str, ...]:
        """The ip6tables filter chains this plan owns (dispatch + one per zone with rules)."""
        return tuple(ip6tables.chain_lines(self.gateway_rules, self.zones, ingress=self.ingress))

    def nft_filter_text(self) -> str:
        return nftables.render_filter(self.gateway_rules, self.nat64, self.zones, self.marks, ingress=self.ingress)

    def filter_text(self) -> str:
        """The zone filter as the configured backend loads it (``nft -f`` or ``ip6tables-restore``)."""
        return self.nft_filter_text() if self.filter_backend == "nftables" else self.ip6tables_text()

    def instance(self, name: str) -> TaygaInstance:
        return next(i for i in self.instances if i.name == name)


def _destinations(cfg: GatewayConfig, rules: tuple[Rule, ...], nat64: Nat64Prefix) -> tuple[IPv4Network, ...]:
    """IPv4 networks the policies allow (for the well-known-prefix check), plus configured ones."""
    out: dict[IPv4Network, None] = dict.fromkeys(cfg.destinations)
    for r in rules:
        if r.action == "allow" and r.dst is not None and nat64.match().covers(r.dst):
            length = r.dst.prefixlen
            if length is not None and length >= nat64.network.prefixlen:
                out[IPv4Network((int(nat64.extract(r.dst.address)), 32 - (128 - length)))] = None
    return tuple(out)


def build_plan(
    cfg: GatewayConfig,
    nat64: Nat64Prefix | None,
    registry: ZoneRegistry,
    ruleset: RuleSet,
    version: TaygaVersion,
) -> GatewayPlan:
    """The desired state, or a ValidationError naming every problem (nothing on the host is touched)."""
    if nat64 is None:
        raise ValidationError("the gateway needs a NAT64 prefix (nat64.prefix in the config)", source="config")
    check_zone_egress(cfg, registry)
    errs = Collector()
    gw_rules = ruleset.for_gateway()
    dests = _destinations(cfg, gw_rules, nat64)
    state = PurePosixPath(cfg.state_dir)
    instances: list[TaygaInstance] = []
    routes: set[RouteSpec] = set()
    prules: set[RuleSpec] = set()
    marks: list[ip6tables.ZoneMark] = []
    addresses: list[str] = []

    def add_instance(name: str, tun: str, pool: IPv4Network, ipv4: IPv4Address, zone: str | None,
                     snat: IPv4Address | None, mark: int | None, table: int | None, maps=()) -> None:
        conf = TaygaConfig(
            tun_device=tun, ipv4_addr=ipv4, prefix=nat64.network, ipv6_addr=cfg.tayga.ipv6_address if zone is None else None,
            dynamic_pool=pool, data_dir=str(state / "tayga" / name), maps=tuple(maps), ipv4_destinations=dests,
            comment=f"zonectl gateway instance {name}" + (f" (zone {zone})" if zone else " (shared pool)"),
        )
        try:
            text = render_tayga(conf, version)
        except ValidationError as exc:
            errs.extend(exc, f"tayga[{name}]")
            return
        instances.append(TaygaInstance(name, tun, pool, conf, text, zone, snat, mark, table))

    def add_group(name: str, tun: str, pool: IPv4Network, n: int, zone: str | None, snat: IPv4Address | None,
                  mark: int | None, table: int | None, maps=(), first_v4: IPv4Address | None = None) -> list[str]:
        """``n`` instances sharing ``pool`` (a slice each); returns their TUNs."""
        slices = _slices(pool, n, "gateway.tayga.zoneInstances" if zone else "gateway.tayga.instances", errs)
        tuns: list[str] = []
        for i, part in enumerate(slices):
            iname, itun = (name, tun) if i == 0 else (f"{name}.{i:x}", f"{tun}.{i:x}")
            if len(itun) > 15:
                errs.add("gateway.tayga.tun", f"{itun!r} (instance {iname}) is longer than the kernel's 15 characters; "
                                              "use a shorter gateway.tayga.tun")
                continue
            v4 = first_v4 if i == 0 and first_v4 is not None else default_ipv4_addr(part)
            add_instance(iname, itun, part, v4, zone, snat, mark, table, maps)
            routes.add(RouteSpec(str(part), itun))
            tuns.append(itun)
        return tuns

    if cfg.tayga.ipv4_address is not None and cfg.tayga.instances > 1:
        first = next(iter(_slices(cfg.tayga.pool, cfg.tayga.instances, "gateway.tayga.instances", Collector())), None)
        if first is not None and cfg.tayga.ipv4_address not in first:
            errs.add("gateway.tayga.ipv4Address", f"{cfg.tayga.ipv4_address} is outside the first instance's slice {first}")
    # every shared instance holds the static maps: a mapped service's replies may hash onto any of them
    shared = add_group("shared", cfg.tayga.tun, cfg.tayga.pool, cfg.tayga.instances, None, None, None, None,
                       cfg.static_maps, cfg.tayga.ipv4_address)
    if shared:
        routes.add(prefix_route(str(nat64.network), shared))
    for m in cfg.static_maps:  # IPv4 clients reach mapped services through the (first) shared Tayga
        if m.ipv4 not in cfg.tayga.pool:
            routes.add(RouteSpec(f"{m.ipv4}/32", cfg.tayga.tun))

    own = [z for z in registry if z.egress is not None]
    for index, zone in enumerate(own):
        assert zone.egress is not None
        if zone.name == "shared":
            errs.add(f"zones.{zone.name}", "a zone named 'shared' cannot have an egress pool of its own (the shared "
                                           "instance has that name)")
            continue
        mark = cfg.marks.value(index)
        table = cfg.routing.table_base + index
        tuns = add_group(zone.name, f"{cfg.tayga.tun}-{zone.id:x}", zone.egress.pool, cfg.tayga.zone_instances,
                         zone.name, zone.egress.address, mark, table)
        if tuns:
            routes.add(prefix_route(str(nat64.network), tuns, table))
        prules.add(RuleSpec(cfg.routing.rule_priority + index, mark, cfg.marks.mask, table))
        marks.append(ip6tables.ZoneMark(zone.name, registry.layout.zone_match(zone.id), mark, cfg.marks.mask))
        addresses.append(f"{zone.egress.address}/32")
    errs.raise_if_any("gateway")

    pools = [nftables.NatPool("shared", cfg.tayga.pool)]
    pools += [nftables.NatPool(z.name, z.egress.pool, z.egress.address) for z in own if z.egress is not None]
    multipath = any(r.ecmp for r in routes)
    zones = tuple(ip6tables.ZoneMatch(z.name, registry.layout.zone_match(z.id)) for z in registry)
    return GatewayPlan(
        nat64=nat64.match(),
        instances=tuple(instances),
        gateway_rules=gw_rules,
        zones=zones,
        marks=tuple(marks),
        nat_text=nftables.render_nat(pools, cfg.uplink),
        routes=frozenset(routes),
        policy_rules=frozenset(prules),
        uplink=cfg.uplink,
        uplink_addresses=tuple(addresses),
        rule_ids=frozenset(r.id for r in gw_rules),
        ingress=tuple(AddrMatch(int(m.ipv6), (1 << 128) - 1) for m in sorted(cfg.static_maps, key=lambda m: int(m.ipv6))),
        filter_backend=cfg.filter,
        sysctls=SYSCTLS + (HASH_SYSCTLS[cfg.tayga.hash] if multipath else ()),
    )


def _slices(pool: IPv4Network, n: int, where: str, errs: Collector) -> list[IPv4Network]:
    """``n`` equal, disjoint slices of ``pool`` (the next power of two of them; the rest stay unused)."""
    if n == 1:
        return [pool]
    bits = (n - 1).bit_length()
    if pool.prefixlen + bits > 30:
        errs.add(where, f"{n} instances need slices of {pool} of at least a /30 each; use a larger pool or fewer instances")
        return []
    return list(pool.subnets(prefixlen_diff=bits))[:n]
