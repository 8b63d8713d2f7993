"""The ``gateway`` section of the zonectl config, as dataclasses, validated with field paths.

Example (every key but ``uplink`` has a default)::

    gateway:
      uplink: eth1                  # the IPv4 interface; pools are masqueraded / SNATed out of it
      stateDir: /var/lib/zonectl/gateway
      filter: nftables              # the zone filter's backend: nftables (verdict maps) or ip6tables
      tayga:
        binary: tayga
        version: auto               # or "0.9.2": which directives may be written
        tun: zt64                   # shared instance's TUN; own-pool zones get zt64-<zone id hex>
        pool: 100.64.0.0/24         # shared dynamic pool (zones without a pool of their own)
        ipv4Address: 100.64.0.1     # default: first address of the pool
        ipv6Address: null           # needed only with 64:ff9b::/96 and a non-global ipv4Address
        instances: 1                # shared Tayga processes (Tayga uses one core), each with a slice of
        zoneInstances: 1            #   the pool, behind an ECMP route; the same for each own-pool zone
        hash: source                # how ECMP picks an instance: source (a pod keeps one) or flow
      staticMaps:                   # ingress: IPv4 clients reach these IPv6 services
        - {ipv4: 198.51.100.80, ipv6: "fd00:10:96::80"}
      destinations: []              # IPv4 networks pods must reach (checked against the well-known prefix)
      marks: {mask: 0x00ff0000}     # fwmark bits zonectl may use to route own-pool zones
      routing: {tableBase: 4200, rulePriority: 4200}
      metrics: {listen: "[::1]:9464"}  # loopback; anyAddress: true to allow [::] (every address, the uplink too)
      restart: {initialDelay: 0.2, maxDelay: 30, probeInterval: 5, probeFailures: 3}

Per-zone pools and egress addresses come from the SecurityZone objects (``spec.egress``); this
module checks they fit together (disjoint pools, enough mark values, addresses outside the pools).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any, Mapping

from ..core import fields as f
from ..core.errors import Collector
from ..core.zones import ZoneRegistry, not_unicast
from ..metrics_server import LOOPBACK, Listen, parse_listen
from ..render.tayga import StaticMap, TaygaVersion

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
DEFAULT_POOL = IPv4Network("100.64.0.0/24")
MAX_INSTANCES = 16
HASHES = ("source", "flow")
CGNAT = IPv4Network("100.64.0.0/10")
DEFAULT_METRICS = Listen(LOOPBACK, 9464)


@dataclass(frozen=True)
class TaygaSettings:
    binary: str = "tayga"
    version: TaygaVersion | None = None  # None: ask the installed binary
    tun: str = "zt64"
    pool: IPv4Network = DEFAULT_POOL
    ipv4_address: IPv4Address | None = None
    ipv6_address: IPv6Address | None = None
    instances: int = 1
    zone_instances: int = 1
    hash: str = "source"


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
    probe_interval: float = 5.0  # seconds between liveness probes of each Tayga (gateway/liveness.py)
    probe_failures: int = 3  # unanswered probes in a row before a running Tayga is restarted


@dataclass(frozen=True)
class GatewayConfig:
    uplink: str
    state_dir: str = "/var/lib/zonectl/gateway"
    tayga: TaygaSettings = field(default_factory=TaygaSettings)
    static_maps: tuple[StaticMap, ...] = ()
    destinations: tuple[IPv4Network, ...] = ()
    marks: MarkSettings = field(default_factory=MarkSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    metrics_listen: Listen | None = DEFAULT_METRICS  # loopback: the DaemonSet runs on the host's network
    restart: RestartSettings = field(default_factory=RestartSettings)
    filter: str = "nftables"


FILTERS = ("nftables", "ip6tables")
_KEYS = ("uplink", "stateDir", "filter", "tayga", "staticMaps", "destinations", "marks", "routing", "metrics", "restart")
PATH_RE = re.compile(r"/[A-Za-z0-9._/-]*")
BINARY_RE = re.compile(r"[A-Za-z0-9._/+-]+")
# Directories that hold the system, not a daemon's state: a gateway writing (and cleaning) its files there
# could clobber what belongs to others. Subdirectories of the /var ones are fine (/var/lib/zonectl).
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/run",
    "/var/log", "/var/tmp", "/var/cache", "/var/spool", "/var/mail", "/usr/bin", "/usr/sbin", "/usr/lib",
    "/usr/lib64", "/usr/local", "/usr/share", "/usr/include", "/usr/libexec", "/usr/local/bin", "/usr/local/lib",
})
UNDER_SYSTEM = ("/proc/", "/sys/", "/dev/", "/boot/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/usr/bin/", "/usr/sbin/")


def check_state_dir(value: Any, path: str, errs: Collector) -> str | None:
    """An absolute, normalised path of plain characters that is not a system directory."""
    text = f.string(value, path, errs, pattern=PATH_RE, max_len=200,
                    what="an absolute path of letters, digits and . _ / - (e.g. /var/lib/zonectl/gateway)")
    if text is None:
        return None
    if text != posixpath.normpath(text) or "/../" in text + "/" or text.startswith("//"):
        errs.add(path, f"{text!r} must be a normalised path (no '..', '//', '.' parts or trailing '/')")
        return None
    if text in SYSTEM_DIRS or text.startswith(UNDER_SYSTEM):
        errs.add(path, f"{text!r} is a system directory; use a directory of the gateway's own, "
                       "e.g. /var/lib/zonectl/gateway")
        return None
    return text


def _ifname(value: Any, path: str, errs: Collector, max_len: int = 15) -> str | None:
    name = f.string(value, path, errs, pattern=IFNAME_RE, max_len=max_len,
                    what=f"an interface name (1-{max_len} of A-Z a-z 0-9 _ . -)")
    if name in (".", "..", "lo"):
        errs.add(path, f"{name!r} cannot be used here")
        return None
    return name


def _pool(value: Any, path: str, errs: Collector) -> IPv4Network | None:
    pool = f.address(value, path, errs, IPv4Network, "an IPv4 CIDR")
    if pool is None:
        return None
    bad = not_unicast(pool.network_address) or not_unicast(pool.broadcast_address)
    if bad:
        errs.add(path, f"{pool} is {bad}: a Tayga pool must be unicast IPv4")
        return None
    if pool.prefixlen > 30:
        errs.add(path, f"{pool} is too small (at least a /30)")
        return None
    return pool


def _static_maps(value: Any, pool: IPv4Network | None, errs: Collector) -> list[StaticMap]:
    maps: list[StaticMap] = []
    if value is None:
        return maps
    if not isinstance(value, list):
        errs.add("gateway.staticMaps", f"must be a list of {{ipv4, ipv6}}, not {f.type_name(value)}")
        return maps
    for i, m in enumerate(value):
        p = f"gateway.staticMaps[{i}]"
        body = f.mapping(m, p, errs, ("ipv4", "ipv6"), what="{ipv4: A.B.C.D, ipv6: X::Y}")
        if body is None:
            continue
        v4 = f.address(body.get("ipv4"), f"{p}.ipv4", errs, IPv4Address, "an IPv4 address")
        v6 = f.address(body.get("ipv6"), f"{p}.ipv6", errs, IPv6Address, "an IPv6 address")
        if v4 is not None and pool is not None and v4 in pool:
            errs.add(f"{p}.ipv4", f"{v4} is inside the dynamic pool {pool}: Tayga could also hand it out to a pod")
        elif v4 is not None and (bad := not_unicast(v4)):
            errs.add(f"{p}.ipv4", f"{v4} is {bad}")
        elif v4 is not None and v6 is not None:
            maps.append(StaticMap(v4, v6))
    return maps


def parse_gateway(body: Mapping[str, Any] | None) -> GatewayConfig:
    """The gateway section as a GatewayConfig; a ValidationError lists every bad field with its path."""
    errs = Collector()
    body, meant = f.section(body, "gateway", errs, _KEYS)
    uplink = _ifname(body.get("uplink"), "gateway.uplink", errs) if "uplink" not in meant else "-"
    state_dir = check_state_dir(body.get("stateDir", GatewayConfig.state_dir), "gateway.stateDir", errs)
    backend = body.get("filter", "nftables")
    if backend not in FILTERS:
        errs.add("gateway.filter", f"{f.short(backend)} is not one of {', '.join(FILTERS)}")

    t = f.optional_mapping(body, "tayga", "gateway.tayga", errs, ("binary", "version", "tun", "pool", "ipv4Address",
                                                                  "ipv6Address", "instances", "zoneInstances", "hash"))
    version = None
    if t.get("version") not in (None, "auto"):
        text = f.string(t["version"], "gateway.tayga.version", errs, max_len=20, what="a Tayga version string or auto")
        try:
            version = TaygaVersion.parse(text) if text is not None else None
        except ValueError as exc:
            errs.add("gateway.tayga.version", str(exc))
    tun = _ifname(t.get("tun", "zt64"), "gateway.tayga.tun", errs, max_len=10)  # zone instances append -<id>
    pool = _pool(t.get("pool", str(DEFAULT_POOL)), "gateway.tayga.pool", errs)
    binary = f.string(t.get("binary", "tayga"), "gateway.tayga.binary", errs, pattern=BINARY_RE, max_len=256,
                      what="a program name or path (letters, digits and . _ / + -)")
    ipv4 = f.address(t["ipv4Address"], "gateway.tayga.ipv4Address", errs, IPv4Address, "an IPv4 address") \
        if t.get("ipv4Address") is not None else None
    ipv6 = f.address(t["ipv6Address"], "gateway.tayga.ipv6Address", errs, IPv6Address, "an IPv6 address") \
        if t.get("ipv6Address") is not None else None
    if pool is not None and ipv4 is not None and ipv4 not in pool:
        errs.add("gateway.tayga.ipv4Address", f"{ipv4} is outside the pool {pool}")
    instances = f.integer(t.get("instances", 1), "gateway.tayga.instances", errs, 1, MAX_INSTANCES)
    zone_instances = f.integer(t.get("zoneInstances", 1), "gateway.tayga.zoneInstances", errs, 1, MAX_INSTANCES)
    spread = t.get("hash", "source")
    if spread not in HASHES:
        errs.add("gateway.tayga.hash", f"{f.short(spread)} is not one of {', '.join(HASHES)}")
    tayga = TaygaSettings(binary=binary or "tayga", version=version, tun=tun or "zt64", pool=pool or DEFAULT_POOL,
                          ipv4_address=ipv4, ipv6_address=ipv6, instances=instances or 1,
                          zone_instances=zone_instances or 1, hash=spread if spread in HASHES else "source")

    maps = _static_maps(body.get("staticMaps"), pool, errs)
    dests: list[IPv4Network] = []
    if body.get("destinations") is not None:
        raw = body["destinations"]
        if not isinstance(raw, list):
            errs.add("gateway.destinations", f"must be a list of IPv4 CIDRs, not {f.type_name(raw)}")
            raw = []
        for i, d in enumerate(raw):
            net = f.address(d, f"gateway.destinations[{i}]", errs, IPv4Network, "an IPv4 CIDR")
            if net is not None:
                dests.append(net)

    mk = f.optional_mapping(body, "marks", "gateway.marks", errs, ("mask",))
    mask = mk.get("mask", MarkSettings.mask)
    if isinstance(mask, str) and re.fullmatch(r"0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10}", mask):
        mask = int(mask, 0)
    if isinstance(mask, bool) or not isinstance(mask, int) or not 0 < mask < 2**32:
        errs.add("gateway.marks.mask", f"{f.short(mask)} must be a non-zero 32-bit mask, e.g. 0x00ff0000")
        mask = MarkSettings.mask
    elif (mask >> MarkSettings(mask).shift) & ((mask >> MarkSettings(mask).shift) + 1):
        errs.add("gateway.marks.mask", f"{mask:#x} must be one contiguous run of bits")

    rt = f.optional_mapping(body, "routing", "gateway.routing", errs, ("tableBase", "rulePriority"))
    table_base = f.integer(rt.get("tableBase", 4200), "gateway.routing.tableBase", errs, 256, 2**31 - 1)
    rule_priority = f.integer(rt.get("rulePriority", 4200), "gateway.routing.rulePriority", errs, 1, 32765)
    routing = RoutingSettings(table_base or 4200, rule_priority or 4200)

    me = f.optional_mapping(body, "metrics", "gateway.metrics", errs)
    meant = f.check_keys(me, ("listen", "anyAddress"), "gateway.metrics", errs) or set()
    # a typo of anyAddress is already an error: not also "listens on every address"
    any_address = "anyAddress" in meant or f.boolean(me.get("anyAddress", False), "gateway.metrics.anyAddress", errs)
    listen = me.get("listen", str(DEFAULT_METRICS))
    if listen is not None:
        listen = parse_listen(listen, "gateway.metrics.listen", errs, any_address=bool(any_address),
                              allow="gateway.metrics.anyAddress: true")

    rs = f.optional_mapping(body, "restart", "gateway.restart", errs,
                            ("initialDelay", "maxDelay", "probeInterval", "probeFailures"))
    initial = f.number(rs.get("initialDelay", 0.2), "gateway.restart.initialDelay", errs, 0.001, 3600)
    max_delay = f.number(rs.get("maxDelay", 30.0), "gateway.restart.maxDelay", errs, 0.001, 3600)
    probe_interval = f.number(rs.get("probeInterval", 5.0), "gateway.restart.probeInterval", errs, 0.1, 3600)
    probe_failures = f.integer(rs.get("probeFailures", 3), "gateway.restart.probeFailures", errs, 1, 100)
    if initial is not None and max_delay is not None and initial > max_delay:
        errs.add("gateway.restart", "need initialDelay <= maxDelay")

    errs.raise_if_any("config")
    assert uplink is not None and state_dir is not None and initial is not None and max_delay is not None
    return GatewayConfig(
        uplink=uplink,
        state_dir=state_dir,
        tayga=tayga,
        static_maps=tuple(maps),
        destinations=tuple(dests),
        marks=MarkSettings(mask),
        routing=routing,
        metrics_listen=listen,
        restart=RestartSettings(initial, max_delay, probe_interval or 5.0, probe_failures or 3),
        filter=backend if backend in FILTERS else "nftables",
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
        for i, m in enumerate(cfg.static_maps):
            if m.ipv4 in pool:
                errs.add(f"gateway.staticMaps[{i}].ipv4", f"{m.ipv4} is inside zone {z.name}'s pool {pool}")
            if m.ipv4 == addr:
                errs.add(f"{where}.address", f"{addr} is also the IPv4 side of gateway.staticMaps[{i}]")
    errs.raise_if_any("gateway")
