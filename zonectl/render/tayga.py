"""tayga.conf from a dataclass, for the Tayga version that will read it.

Why this knows Tayga versions: Tayga treats an unknown directive as fatal, and several combinations
only fail when the daemon starts (or, worse, start fine and then drop traffic). Refusing them here,
with the reason and a fix, means a bad gateway config never replaces a running Tayga.

Facts mirrored from Tayga's sources (conffile.c, addrmap.c) and checked against Debian's 0.9.2
binary by tests/netns/test_tayga_claims.py:

* 0.9.2 directives: tun-device, ipv4-addr, ipv6-addr, prefix, map, dynamic-pool, data-dir,
  strict-frag-hdr. 0.9.4 adds wkpf-strict, 0.9.5 udp-cksum-mode and log, 0.9.6 offlink-mtu.
* prefix length must be 32, 40, 48, 56, 64 or 96; an IPv6 address whose first byte is 0 is
  "reserved" except 64:ff9b::/96 itself, so 0.9.2 refuses the RFC 8215 local-use prefix
  64:ff9b:1::/48 (0.9.4+ accepts all of 64:ff9b::/32).
* Behind the well-known prefix 64:ff9b::/96 (with wkpf-strict, the only mode before 0.9.4), Tayga
  drops traffic to and from non-global IPv4 (its own list, below), and it cannot derive its IPv6
  address from a non-global ipv4-addr, so ipv6-addr becomes mandatory (RFC 6052 section 3.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Iterable

from ..core.errors import Collector, ValidationError
from . import checks

WELL_KNOWN_PREFIX = IPv6Network("64:ff9b::/96")
WKPF_32 = IPv6Network("64:ff9b::/32")
RFC6052_LENGTHS = (32, 40, 48, 56, 64, 96)
MAX_LINE = 511  # Tayga reads lines into a 512-byte buffer and aborts on longer ones
IFNAMSIZ = 16

BASE_DIRECTIVES = frozenset(
    {"tun-device", "ipv4-addr", "ipv6-addr", "prefix", "map", "dynamic-pool", "data-dir", "strict-frag-hdr"}
)
ADDED_IN: dict[str, tuple[int, ...]] = {
    "wkpf-strict": (0, 9, 4),
    "udp-cksum-mode": (0, 9, 5),
    "log": (0, 9, 5),
    "offlink-mtu": (0, 9, 6),
}
LOG_FLAGS = ("drop", "reject", "icmp", "self", "dyn")
UDP_CKSUM_MODES = ("drop", "calc", "fwd")

# Tayga's is_private_ip4_addr(): what it calls non-global behind the well-known prefix.
_PRIVATE_092 = tuple(
    IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
              "198.51.100.0/24", "203.0.113.0/24")
)
_PRIVATE_094 = _PRIVATE_092 + (IPv4Network("100.64.0.0/10"),)


@dataclass(frozen=True, order=True)
class TaygaVersion:
    """A Tayga release; what it accepts is a function of it (see ``directives``)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> "TaygaVersion":
        m = re.fullmatch(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?\S*\s*", text)
        if not m:
            raise ValueError(f"{text!r} is not a Tayga version (e.g. 0.9.2)")
        return cls(int(m[1]), int(m[2]), int(m[3] or 0))

    @property
    def as_tuple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def directives(self) -> frozenset[str]:
        return BASE_DIRECTIVES | {d for d, since in ADDED_IN.items() if self.as_tuple >= since}

    @property
    def accepts_local_use_prefix(self) -> bool:
        """64:ff9b:1::/48 (RFC 8215): 0.9.2 calls it a reserved address."""
        return self.as_tuple >= (0, 9, 4)

    @property
    def private_ipv4(self) -> tuple[IPv4Network, ...]:
        return _PRIVATE_094 if self.as_tuple >= (0, 9, 4) else _PRIVATE_092

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


DEBIAN_12 = TaygaVersion(0, 9, 2)


@dataclass(frozen=True)
class StaticMap:
    """``map IPv4 IPv6``: a fixed 1:1 mapping, e.g. so IPv4 clients can reach a service (ingress)."""

    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True)
class TaygaConfig:
    """Everything one Tayga instance reads. Optional directives are written only when set.

    ``ipv4_destinations`` is not a directive: it lists the IPv4 networks pods are expected to reach
    through this instance, so the well-known-prefix restriction can be checked before traffic is
    silently dropped.
    """

    tun_device: str
    ipv4_addr: IPv4Address
    prefix: IPv6Network | None
    ipv6_addr: IPv6Address | None = None
    dynamic_pool: IPv4Network | None = None
    data_dir: str | None = None
    maps: tuple[StaticMap, ...] = ()
    ipv4_destinations: tuple[IPv4Network, ...] = ()
    strict_frag_hdr: bool | None = None
    wkpf_strict: bool | None = None  # 0.9.4+
    udp_cksum_mode: str | None = None  # 0.9.5+
    log: tuple[str, ...] = ()  # 0.9.5+
    offlink_mtu: int | None = None  # 0.9.6+
    comment: str = field(default="", compare=False)


def _ip6_reserved(addr: IPv6Address, version: TaygaVersion) -> bool:
    """Tayga's validate_ip6_addr(): which IPv6 addresses it refuses in the config."""
    packed = addr.packed
    if version.accepts_local_use_prefix:
        if packed[:4] == WKPF_32.network_address.packed[:4]:
            return False
    elif addr in WELL_KNOWN_PREFIX:
        return False
    return packed[0] == 0 or packed[0] == 0xFF or addr in IPv6Network("fe80::/10")


def _ip4_reserved(addr: IPv4Address, version: TaygaVersion) -> bool:
    """Tayga's validate_ip4_addr(): 0/8, 127/8, 169.254/16 and multicast (class E too before 0.9.6)."""
    first = int(addr) >> 24
    if first in (0, 127) or addr in IPv4Network("169.254.0.0/16"):
        return True
    if version.as_tuple >= (0, 9, 6):
        return 224 <= first <= 239 or addr == IPv4Address("255.255.255.255")
    return first >= 224


def _non_global(net: IPv4Network | IPv4Address, version: TaygaVersion) -> IPv4Network | None:
    n = IPv4Network(net) if isinstance(net, IPv4Address) else net
    for private in version.private_ipv4:
        if n.overlaps(private):
            return private
    return None


def _prefix_advice(version: TaygaVersion) -> str:
    local_use = (
        " or the RFC 8215 local-use prefix 64:ff9b:1::/48"
        if version.accepts_local_use_prefix
        else " (the local-use prefix 64:ff9b:1::/48 needs Tayga >= 0.9.4; this is "
        f"{version})"
    )
    wkpf = " (or set wkpf-strict off)" if "wkpf-strict" in version.directives else ""
    return f"use a network-specific prefix such as fd64:ff9b::/96{local_use}{wkpf}"


def _is_wkpf_strict(cfg: TaygaConfig, version: TaygaVersion) -> bool:
    if cfg.prefix != WELL_KNOWN_PREFIX:
        return False
    return cfg.wkpf_strict is not False or "wkpf-strict" not in version.directives


def validate(cfg: TaygaConfig, version: TaygaVersion = DEBIAN_12) -> None:
    """Raise ValidationError listing every directive Tayga ``version`` would reject (or silently break)."""
    errs = Collector()
    _check_tokens(cfg, errs)
    _check_directive_support(cfg, version, errs)
    if _ip4_reserved(cfg.ipv4_addr, version):
        errs.add("ipv4-addr", f"{cfg.ipv4_addr} is a reserved address Tayga refuses")
    if cfg.prefix is not None:
        _check_prefix(cfg.prefix, version, errs)
    if cfg.ipv6_addr is not None:
        _check_ipv6_addr(cfg, version, errs)
    elif cfg.prefix is None:
        errs.add("ipv6-addr", "is required when no NAT64 prefix is configured")
    if cfg.prefix is None and not cfg.maps:
        errs.add("prefix", "no NAT64 prefix and no map: Tayga has nothing to translate")
    strict = _is_wkpf_strict(cfg, version)
    if strict and cfg.ipv6_addr is None:
        private = _non_global(cfg.ipv4_addr, version)
        if private is not None:
            errs.add(
                "ipv6-addr",
                f"is required: prefix {WELL_KNOWN_PREFIX} is the RFC 6052 well-known prefix and ipv4-addr "
                f"{cfg.ipv4_addr} is non-global ({private}), so Tayga {version} cannot derive its IPv6 address; "
                f"set ipv6-addr or {_prefix_advice(version)}",
            )
    if strict:
        for dest in cfg.ipv4_destinations:
            private = _non_global(dest, version)
            if private is not None:
                errs.add(
                    "prefix",
                    f"{WELL_KNOWN_PREFIX} is the RFC 6052 well-known prefix: Tayga {version} drops traffic to "
                    f"non-global IPv4 such as {dest} ({private}) behind it; {_prefix_advice(version)}",
                )
    if cfg.dynamic_pool is not None:
        _check_pool(cfg.dynamic_pool, version, errs)
    _check_maps(cfg, version, errs)
    if cfg.data_dir is not None and not cfg.data_dir.startswith("/"):
        errs.add("data-dir", f"{cfg.data_dir!r} must be an absolute path")
    _check_options(cfg, errs)
    errs.raise_if_any(f"tayga.conf ({cfg.tun_device})")


def _check_tokens(cfg: TaygaConfig, errs: Collector) -> None:
    if not cfg.tun_device or len(cfg.tun_device) >= IFNAMSIZ or not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.tun_device):
        errs.add("tun-device", f"{cfg.tun_device!r} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)")
    if cfg.data_dir is not None and (re.search(r"[\s#]", cfg.data_dir) or len(cfg.data_dir) > 400):
        errs.add("data-dir", f"{cfg.data_dir!r} must not contain whitespace or '#' (Tayga splits lines on them)")


def _check_directive_support(cfg: TaygaConfig, version: TaygaVersion, errs: Collector) -> None:
    wanted = {
        "wkpf-strict": cfg.wkpf_strict is not None,
        "udp-cksum-mode": cfg.udp_cksum_mode is not None,
        "log": bool(cfg.log),
        "offlink-mtu": cfg.offlink_mtu is not None,
    }
    for directive, used in wanted.items():
        if used and directive not in version.directives:
            since = ".".join(map(str, ADDED_IN[directive]))
            errs.add(directive, f"needs Tayga >= {since}; Tayga {version} aborts on an unknown directive")


def _check_prefix(prefix: IPv6Network, version: TaygaVersion, errs: Collector) -> None:
    if prefix.prefixlen not in RFC6052_LENGTHS:
        errs.add("prefix", f"{prefix}: Tayga accepts only /32, /40, /48, /56, /64 or /96 (RFC 6052)")
    if _ip6_reserved(prefix.network_address, version):
        hint = ""
        if prefix.subnet_of(WKPF_32):
            hint = f"; {_prefix_advice(version)}"
        errs.add("prefix", f"{prefix} is a reserved address to Tayga {version}{hint}")
    if prefix.prefixlen < 96 and prefix.network_address.packed[8]:
        errs.add("prefix", f"{prefix}: bits 64-71 must be zero (RFC 6052 'u' octet)")


def _check_ipv6_addr(cfg: TaygaConfig, version: TaygaVersion, errs: Collector) -> None:
    addr = cfg.ipv6_addr
    assert addr is not None
    if _ip6_reserved(addr, version):
        errs.add("ipv6-addr", f"{addr} is a reserved address Tayga refuses")
    if addr in WELL_KNOWN_PREFIX and (cfg.wkpf_strict is not False or "wkpf-strict" not in version.directives):
        errs.add("ipv6-addr", f"{addr} lies in the well-known prefix {WELL_KNOWN_PREFIX}, which Tayga refuses")
    elif cfg.prefix is not None and addr in cfg.prefix:
        errs.add("ipv6-addr", f"{addr} lies inside the NAT64 prefix {cfg.prefix}; pick an address outside it")


def _check_pool(pool: IPv4Network, version: TaygaVersion, errs: Collector) -> None:
    if pool.prefixlen > 31:
        errs.add("dynamic-pool", f"{pool}: Tayga needs a /31 or shorter (the lowest address is reserved)")
    if _ip4_reserved(pool.network_address, version):
        errs.add("dynamic-pool", f"{pool} is a reserved range Tayga refuses")


def _check_maps(cfg: TaygaConfig, version: TaygaVersion, errs: Collector) -> None:
    seen4: dict[IPv4Address, int] = {cfg.ipv4_addr: -1}
    seen6: dict[IPv6Address, int] = {}
    if cfg.ipv6_addr is not None:
        seen6[cfg.ipv6_addr] = -1
    for i, m in enumerate(cfg.maps):
        path = f"map[{i}]"
        if _ip4_reserved(m.ipv4, version):
            errs.add(path, f"{m.ipv4} is a reserved address Tayga refuses")
        if _ip6_reserved(m.ipv6, version):
            errs.add(path, f"{m.ipv6} is a reserved address Tayga refuses")
        if m.ipv6 in WELL_KNOWN_PREFIX:
            errs.add(path, f"{m.ipv6}: Tayga refuses single-host maps inside {WELL_KNOWN_PREFIX}")
        elif cfg.prefix is not None and m.ipv6 in cfg.prefix:
            errs.add(path, f"{m.ipv6} overlaps the NAT64 prefix {cfg.prefix}")
        for addr, seen, what in ((m.ipv4, seen4, "IPv4"), (m.ipv6, seen6, "IPv6")):
            if addr in seen:  # type: ignore[operator]
                other = seen[addr]  # type: ignore[index]
                where = "Tayga's own address" if other < 0 else f"map[{other}]"
                errs.add(path, f"{what} address {addr} is already used by {where}")
            else:
                seen[addr] = i  # type: ignore[index]


def _check_options(cfg: TaygaConfig, errs: Collector) -> None:
    if cfg.udp_cksum_mode is not None and cfg.udp_cksum_mode not in UDP_CKSUM_MODES:
        errs.add("udp-cksum-mode", f"{cfg.udp_cksum_mode!r} is not one of {', '.join(UDP_CKSUM_MODES)}")
    for flag in cfg.log:
        if flag not in LOG_FLAGS:
            errs.add("log", f"{flag!r} is not one of {', '.join(LOG_FLAGS)}")
    if cfg.offlink_mtu is not None and not 1280 <= cfg.offlink_mtu <= 65535:
        errs.add("offlink-mtu", f"{cfg.offlink_mtu} must be from 1280 to 65535")


def check_form(cfg: TaygaConfig, version: TaygaVersion) -> None:
    """Each value is of the exact type and form its directive takes (raises ValidationError)."""
    if not isinstance(cfg, TaygaConfig) or not isinstance(version, TaygaVersion):
        raise checks.refuse("tayga.conf", cfg, "is not a TaygaConfig for a TaygaVersion")
    for part in (version.major, version.minor, version.patch):
        checks.integer(part, "Tayga version", 0, 999)
    checks.pattern(cfg.tun_device, checks.IFNAME, "tun-device", "an interface name")
    checks.ipv4(cfg.ipv4_addr, "ipv4-addr")
    for value, what in ((cfg.prefix, "prefix"), (cfg.ipv6_addr, "ipv6-addr"), (cfg.dynamic_pool, "dynamic-pool")):
        if value is not None:
            checks.address(value, {"prefix": (IPv6Network,), "ipv6-addr": (IPv6Address,),
                                   "dynamic-pool": (IPv4Network,)}[what], what)
    if cfg.data_dir is not None:
        checks.pattern(cfg.data_dir, checks.PATH, "data-dir", "an absolute path of letters, digits and . _ / -")
    for i, m in enumerate(cfg.maps):
        if not isinstance(m, StaticMap):
            raise checks.refuse(f"map[{i}]", m, "is not a StaticMap")
        checks.ipv4(m.ipv4, f"map[{i}] IPv4")
        checks.ipv6(m.ipv6, f"map[{i}] IPv6")
    for i, d in enumerate(cfg.ipv4_destinations):
        checks.ipv4_net(d, f"destination[{i}]")
    for switch, what in ((cfg.strict_frag_hdr, "strict-frag-hdr"), (cfg.wkpf_strict, "wkpf-strict")):
        if switch is not None and not isinstance(switch, bool):
            raise checks.refuse(what, switch, "is not true or false")
    if cfg.udp_cksum_mode is not None:
        checks.one_of(cfg.udp_cksum_mode, UDP_CKSUM_MODES, "udp-cksum-mode")
    for flag in cfg.log:
        checks.one_of(flag, LOG_FLAGS, "log")
    if cfg.offlink_mtu is not None:
        checks.integer(cfg.offlink_mtu, "offlink-mtu", 1280, 65535)
    checks.text(cfg.comment, "comment")


def _bool(value: bool) -> str:
    return "on" if value else "off"


def render(cfg: TaygaConfig, version: TaygaVersion = DEBIAN_12, *, check: bool = True) -> str:
    """tayga.conf text; raises ValidationError (every problem, with a fix) instead of a file Tayga rejects.

    ``check=False`` skips validation: only tests use it, to show the real Tayga refuses the same files.
    The form of every value is checked either way: nothing can add a directive to the file.
    """
    check_form(cfg, version)
    if check:
        validate(cfg, version)
    lines = ["# Written by zonectl; edits are overwritten."]
    if cfg.comment:
        lines.append(f"# {cfg.comment}")
    lines.append(f"# For TAYGA {version}.")
    lines.append(f"tun-device {cfg.tun_device}")
    lines.append(f"ipv4-addr {cfg.ipv4_addr}")
    if cfg.ipv6_addr is not None:
        lines.append(f"ipv6-addr {cfg.ipv6_addr}")
    if cfg.prefix is not None:
        lines.append(f"prefix {cfg.prefix}")
    if cfg.wkpf_strict is not None:
        lines.append(f"wkpf-strict {_bool(cfg.wkpf_strict)}")
    if cfg.dynamic_pool is not None:
        lines.append(f"dynamic-pool {cfg.dynamic_pool}")
    if cfg.data_dir is not None:
        lines.append(f"data-dir {cfg.data_dir}")
    if cfg.strict_frag_hdr is not None:
        lines.append(f"strict-frag-hdr {_bool(cfg.strict_frag_hdr)}")
    if cfg.udp_cksum_mode is not None:
        lines.append(f"udp-cksum-mode {cfg.udp_cksum_mode}")
    if cfg.log:
        lines.append("log " + " ".join(cfg.log))
    if cfg.offlink_mtu is not None:
        lines.append(f"offlink-mtu {cfg.offlink_mtu}")
    for m in sorted(cfg.maps, key=lambda m: (int(m.ipv4), int(m.ipv6))):
        lines.append(f"map {m.ipv4} {m.ipv6}")
    for line in lines:
        if len(line) > MAX_LINE:
            raise ValidationError(f"line {line[:40]!r}... is longer than Tayga's {MAX_LINE} characters")
    return "\n".join(lines) + "\n"


def directives_used(text: str) -> list[str]:
    """The directive names in a tayga.conf text (what a version check compares against)."""
    out: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            out.append(words[0].lower())
    return out


def unsupported_directives(text: str, version: TaygaVersion) -> list[str]:
    """Directives in ``text`` that Tayga ``version`` would abort on."""
    return [d for d in directives_used(text) if d not in version.directives]


def default_ipv4_addr(pool: IPv4Network) -> IPv4Address:
    """Tayga's own IPv4 address when none is configured: the first usable address of its pool."""
    return pool.network_address + 1


def maps_from_pairs(pairs: Iterable[tuple[str, str]]) -> tuple[StaticMap, ...]:
    return tuple(StaticMap(IPv4Address(a), IPv6Address(b)) for a, b in pairs)
