"""The ``gateway`` section of the zonectl config, as dataclasses, validated with field paths.

Example (every key but ``uplink`` has a default)::

    gateway:
      uplink: eth1                  # the IPv4 interface; pools are masqueraded / SNATed out of it
      stateDir: /var/lib/zonectl/gateway
      tayga:
        binary: tayga
        version: auto               # or "0.9.2": which directives may be written
        tun: zt64                   # shared instance's TUN; own-pool zones get zt64-<zone id hex>
        pool: 100.64.0.0/24         # shared dynamic pool (zones without a pool of their own)
        ipv4Address: 100.64.0.1     # default: first address of the pool
        ipv6Address: null           # needed only with 64:ff9b::/96 and a non-global ipv4Address
      staticMaps:                   # ingress: IPv4 clients reach these IPv6 services
        - {ipv4: 198.51.100.80, ipv6: "fd00:10:96::80"}
      destinations: []              # IPv4 networks pods must reach (checked against the well-known prefix)
      marks: {mask: 0x00ff0000}     # fwmark bits zonectl may use to route own-pool zones
      routing: {tableBase: 4200, rulePriority: 4200}
      metrics: {listen: "[::]:9464"}
      restart: {initialDelay: 0.2, maxDelay: 30}

Per-zone pools and egress addresses come from the SecurityZone objects (``spec.egress``); this
module checks they fit together (disjoint pools, enough mark values, addresses outside the pools).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any, Mapping

from ..core.errors import Collector, ValidationError
from ..core.zones import ZoneRegistry
from ..render.tayga import StaticMap, TaygaVersion

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
DEFAULT_POOL = IPv4Network("100.64.0.0/24")
CGNAT = IPv4Network("100.64.0.0/10")


@dataclass(frozen=True)
class TaygaSettings:
    binary: str = "tayga"
    version: TaygaVersion | None = None  # None: ask the installed binary
    tun: str = "zt64"
    pool: IPv4Network = DEFAULT_POOL
    ipv4_address: IPv4Address | None = None
    ipv6_address: IPv6Address | None = None


@dataclass(frozen=True)
class MarkSettings:
    mask: int = 0x00FF0000

    @property
    def shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1

    @property
    def capacity(self) -> int:
        """How many zones can get a mark of their own (value 0 means "shared")."""
        return (self.mask >> self.shift) if self.mask else 0

    def value(self, index: int) -> int:
        return ((index + 1) << self.shift) & self.mask


@dataclass(frozen=True)
class RoutingSettings:
    table_base: int = 4200
    rule_priority: int = 4200


@dataclass(frozen=True)
class RestartSettings:
    initial_delay: float = 0.2
    max_delay: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    uplink: str
    state_dir: str = "/var/lib/zonectl/gateway"
    tayga: TaygaSettings = field(default_factory=TaygaSettings)
    static_maps: tuple[StaticMap, ...] = ()
    destinations: tuple[IPv4Network, ...] = ()
    marks: MarkSettings = field(default_factory=MarkSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    metrics_listen: str | None = "[::]:9464"
    restart: RestartSettings = field(default_factory=RestartSettings)


_KEYS = {"uplink", "stateDir", "tayga", "staticMaps", "destinations", "marks", "routing", "metrics", "restart"}


def _get(body: Mapping[str, Any], key: str, path: str, errs: Collector, kind: type | tuple, default: Any) -> Any:
    value = body.get(key, default)
    if value is None or isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float)):
        return value
    errs.add(f"{path}.{key}", f"{value!r} must be {getattr(kind, '__name__', kind)}")
    return default


def _parse(ctor, value: Any, path: str, errs: Collector, what: str):
    if value is None:
        return None
    try:
        return ctor(str(value))
    except ValueError as exc:
        errs.add(path, f"{value!r} is not {what}: {exc}")
        return None


def parse_gateway(body: Mapping[str, Any] | None) -> GatewayConfig:
    """The gateway section as a GatewayConfig; a ValidationError lists every bad field with its path."""
    body = body or {}
    errs = Collector()
    if not isinstance(body, Mapping):
        raise ValidationError("gateway: must be a mapping", source="config")
    unknown = set(body) - _KEYS
    if unknown:
        errs.add("gateway", f"unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
    uplink = body.get("uplink")
    if not isinstance(uplink, str) or not IFNAME_RE.match(uplink):
        errs.add("gateway.uplink", f"{uplink!r}: required, the IPv4 uplink interface name (1-15 characters)")
    state_dir = _get(body, "stateDir", "gateway", errs, str, GatewayConfig.state_dir)
    if isinstance(state_dir, str) and (not state_dir.startswith("/") or re.search(r"[\s#]", state_dir)):
        errs.add("gateway.stateDir", f"{state_dir!r} must be an absolute path without spaces or '#'")

    t = errs.section(body, "tayga", "gateway.tayga", {"binary", "version", "tun", "pool", "ipv4Address", "ipv6Address"})
    version = None
    if t.get("version") not in (None, "auto"):
        version = _parse(TaygaVersion.parse, t["version"], "gateway.tayga.version", errs, "a Tayga version")
    tun = _get(t, "tun", "gateway.tayga", errs, str, "zt64")
    if isinstance(tun, str) and (not IFNAME_RE.match(tun) or len(tun) > 10):
        errs.add("gateway.tayga.tun", f"{tun!r} must be 1-10 characters (zone instances append -<id>)")
    pool = _parse(IPv4Network, t.get("pool", str(DEFAULT_POOL)), "gateway.tayga.pool", errs, "an IPv4 CIDR")
    tayga = TaygaSettings(
        binary=_get(t, "binary", "gateway.tayga", errs, str, "tayga"),
        version=version,
        tun=tun if isinstance(tun, str) else "zt64",
        pool=pool or DEFAULT_POOL,
        ipv4_address=_parse(IPv4Address, t.get("ipv4Address"), "gateway.tayga.ipv4Address", errs, "an IPv4 address"),
        ipv6_address=_parse(IPv6Address, t.get("ipv6Address"), "gateway.tayga.ipv6Address", errs, "an IPv6 address"),
    )
    if pool is not None and pool.prefixlen > 30:
        errs.add("gateway.tayga.pool", f"{pool} is too small (at least a /30)")
    if pool is not None and tayga.ipv4_address is not None and tayga.ipv4_address not in pool:
        errs.add("gateway.tayga.ipv4Address", f"{tayga.ipv4_address} is outside the pool {pool}")

    maps: list[StaticMap] = []
    raw_maps = body.get("staticMaps") or []
    if not isinstance(raw_maps, list):
        errs.add("gateway.staticMaps", "must be a list of {ipv4, ipv6}")
        raw_maps = []
    for i, m in enumerate(raw_maps):
        p = f"gateway.staticMaps[{i}]"
        if not isinstance(m, Mapping) or set(m) != {"ipv4", "ipv6"}:
            errs.add(p, "must be {ipv4: A.B.C.D, ipv6: X::Y}")
            continue
        v4 = _parse(IPv4Address, m["ipv4"], f"{p}.ipv4", errs, "an IPv4 address")
        v6 = _parse(IPv6Address, m["ipv6"], f"{p}.ipv6", errs, "an IPv6 address")
        if v4 and v6:
            maps.append(StaticMap(v4, v6))

    dests: list[IPv4Network] = []
    for i, d in enumerate(body.get("destinations") or []):
        net = _parse(IPv4Network, d, f"gateway.destinations[{i}]", errs, "an IPv4 CIDR")
        if net:
            dests.append(net)

    mk = errs.section(body, "marks", "gateway.marks", {"mask"})
    mask = mk.get("mask", MarkSettings.mask)
    if isinstance(mask, str):
        mask = _parse(lambda s: int(s, 0), mask, "gateway.marks.mask", errs, "an integer") or 0
    if not isinstance(mask, int) or not 0 < mask < 2**32:
        errs.add("gateway.marks.mask", f"{mask!r} must be a non-zero 32-bit mask, e.g. 0x00ff0000")
        mask = MarkSettings.mask
    elif (mask >> MarkSettings(mask).shift) & ((mask >> MarkSettings(mask).shift) + 1):
        errs.add("gateway.marks.mask", f"{mask:#x} must be one contiguous run of bits")

    rt = errs.section(body, "routing", "gateway.routing", {"tableBase", "rulePriority"})
    routing = RoutingSettings(
        table_base=_get(rt, "tableBase", "gateway.routing", errs, int, 4200),
        rule_priority=_get(rt, "rulePriority", "gateway.routing", errs, int, 4200),
    )
    if not 256 <= routing.table_base < 2**31:
        errs.add("gateway.routing.tableBase", f"{routing.table_base} must be from 256 (above main/local) to 2^31")
    if not 1 <= routing.rule_priority < 32766:
        errs.add("gateway.routing.rulePriority", f"{routing.rule_priority} must be from 1 to 32765 (before main)")

    me = errs.section(body, "metrics", "gateway.metrics", {"listen"})
    listen = me.get("listen", "[::]:9464")
    if listen is not None and (not isinstance(listen, str) or not re.fullmatch(r"(\[[0-9a-fA-F:.]*\]|[0-9.]*):\d{1,5}", listen)):
        errs.add("gateway.metrics.listen", f"{listen!r} must be HOST:PORT, e.g. [::]:9464, or null to disable")

    rs = errs.section(body, "restart", "gateway.restart", {"initialDelay", "maxDelay"})
    restart = RestartSettings(
        initial_delay=float(_get(rs, "initialDelay", "gateway.restart", errs, (int, float), 0.2)),
        max_delay=float(_get(rs, "maxDelay", "gateway.restart", errs, (int, float), 30.0)),
    )
    if not 0 < restart.initial_delay <= restart.max_delay:
        errs.add("gateway.restart", "need 0 < initialDelay <= maxDelay")

    errs.raise_if_any("config")
    return GatewayConfig(
        uplink=str(uplink),
        state_dir=state_dir,
        tayga=tayga,
        static_maps=tuple(maps),
        destinations=tuple(dests),
        marks=MarkSettings(mask),
        routing=routing,
        metrics_listen=listen,
        restart=restart,
    )


def check_zone_egress(cfg: GatewayConfig, registry: ZoneRegistry) -> None:
    """Per-zone pools must be disjoint (from each other and the shared pool) and fit the mark bits.

    Disjoint because the return IPv4 packet is routed to a zone's Tayga by its pool address alone.
    """
    errs = Collector()
    owners: list[tuple[str, IPv4Network]] = [("gateway.tayga.pool (shared)", cfg.tayga.pool)]
    own = [z for z in registry if z.egress is not None]
    if len(own) > cfg.marks.capacity:
        errs.add("gateway.marks.mask", f"{cfg.marks.mask:#x} has room for {cfg.marks.capacity} own-pool zones, "
                                       f"{len(own)} zones have an egress pool")
    for z in own:
        assert z.egress is not None
        pool, addr = z.egress.pool, z.egress.address
        where = f"zones.{z.name}.egress"
        for other, net in owners:
            if pool.overlaps(net):
                errs.add(f"{where}.pool", f"{pool} overlaps {net} of {other}; pools must be disjoint")
        owners.append((f"zone {z.name}", pool))
        if addr in pool or addr in cfg.tayga.pool:
            errs.add(f"{where}.address", f"{addr} is inside a Tayga pool; the egress address must be routable outside")
    errs.raise_if_any("gateway")
