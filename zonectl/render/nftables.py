"""Compiled rules -> nftables: the zone filter in a table of zonectl's own, and the IPv4 NAT table.

Why tables of our own: nftables evaluates every base chain hooked at a point, so zonectl's table
can drop NAT64-bound traffic without reading or editing anyone else's tables, and replacing it is
one transaction (``table X`` / ``delete table X`` / ``table X {...}`` in one ``nft -f``).

Wildcard masks are written ``ip6 saddr & MASK == VALUE`` with VALUE already ANDed with MASK:
nftables compares the masked packet address to the value, so a value with bits outside the mask
would silently never match. Contiguous masks are written as plain prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Sequence

from ..core.layout import AddrMatch
from ..core.rules import Rule
from . import checks
from .ip6tables import ZoneMark, ZoneMatch, check_marks, check_zones, rule_comment, zone_groups

FILTER_TABLE = "zonectl"
NAT_TABLE = "zonectl-nat"
PROTO = {"tcp": "tcp", "udp": "udp", "sctp": "sctp"}


def addr_expr(field: str, match: AddrMatch) -> str:
    """``ip6 saddr fd00::/64`` for a prefix, ``ip6 saddr & mask == value`` for a wildcard mask."""
    assert match.value & match.mask == match.value, "AddrMatch values are normalised"
    length = match.prefixlen
    if length is not None:
        return f"ip6 {field} {match.address}/{length}"
    return f"ip6 {field} & {match.netmask} == {match.address}"


def _quote(text: str) -> str:
    return '"' + checks.text(text[:128], "nft comment") + '"'


def rule_expr(rule: Rule, *, with_src: bool = True) -> str:
    parts: list[str] = []
    if with_src and rule.src is not None and not rule.src.is_any:
        parts.append(addr_expr("saddr", rule.src))
    if rule.dst is not None and not rule.dst.is_any:
        parts.append(addr_expr("daddr", rule.dst))
    if rule.protocol == "icmpv6":
        parts.append("meta l4proto ipv6-icmp")
        if rule.icmp_type is not None:
            parts.append(f"icmpv6 type {rule.icmp_type}")
    elif rule.protocol is not None:
        proto = PROTO[rule.protocol]
        if rule.port_min is None:
            parts.append(f"meta l4proto {proto}")
        else:
            ports = str(rule.port_min) if rule.port_max in (None, rule.port_min) else f"{rule.port_min}-{rule.port_max}"
            parts.append(f"{proto} dport {ports}")
    verdict = "accept" if rule.action == "allow" else "drop"
    parts += ["counter", verdict, "comment", _quote(rule_comment(rule))]
    return " ".join(parts)


def _replace(family: str, table: str, body: list[str]) -> list[str]:
    """Create-or-empty the table, delete it, recreate it: one atomic replacement in ``nft -f``."""
    return [f"table {family} {table}", f"delete table {family} {table}", f"table {family} {table} {{", *body, "}"]


def _chain_name(zone: str) -> str:
    return f"zone-{zone}"


def render_filter(
    rules: Iterable[Rule],
    nat64: AddrMatch,
    zones: Sequence[ZoneMatch],
    marks: Sequence[ZoneMark] = (),
    *,
    table: str = FILTER_TABLE,
    ingress: Sequence[AddrMatch] = (),
) -> str:
    """The zone filter (and own-pool marks) as an ``ip6`` table; same verdicts as the ip6tables render.

    Each zone has a chain of its own; when every zone shares one mask (one layout, cluster scope) the
    dispatch is a single verdict map lookup on the masked source address, otherwise one rule per zone.
    """
    rules = checks.rules(rules)
    check_zones(zones)
    check_marks(marks)
    checks.match(nat64, "NAT64 prefix")
    checks.pattern(table, checks.TOKEN, "table", "a table name")
    ingress = [checks.match(m, "static map") for m in ingress]
    groups = zone_groups(rules, zones)
    body = [
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\t{addr_expr('daddr', nat64)} jump zone-egress",
        "\t}",
    ]
    for name, _, zrules in groups:
        body.append(f"\tchain {_quote_chain(name)} {{")
        body += [f"\t\t{rule_expr(r, with_src=False)}" for r in zrules]
        body.append(f"\t\tcounter drop comment {_quote(f'zonectl zone={name} action=deny closed')}")
        body.append("\t}")
    body.append("\tchain zone-egress {")
    for svc in ingress:
        body.append(f"\t\t{addr_expr('saddr', svc)} ct state established,related accept "
                    f"comment {_quote('zonectl ingress-map replies')}")
    masks = {m.mask for _, m, _ in groups if m is not None}
    if groups and len(masks) == 1 and all(m is not None and m.prefixlen is None for _, m, _ in groups):
        mask = AddrMatch(0, masks.pop()).netmask
        entries = ", ".join(f"{m.address} : jump {_quote_chain(name)}" for name, m, _ in groups if m is not None)
        body.append(f"\t\tip6 saddr & {mask} vmap {{ {entries} }}")
    else:
        for name, zm, _ in groups:
            src = f"{addr_expr('saddr', zm)} " if zm is not None and not zm.is_any else ""
            body.append(f"\t\t{src}jump {_quote_chain(name)}")
    body.append(f"\t\tcounter drop comment {_quote('zonectl zone=- action=deny fail-closed')}")
    body.append("\t}")
    if marks:
        body += [
            "\tchain prerouting {",
            "\t\ttype filter hook prerouting priority mangle; policy accept;",
        ]
        for mark in sorted(marks, key=lambda mk: mk.zone):
            keep = ~mark.mask & 0xFFFFFFFF
            body.append(
                f"\t\t{addr_expr('daddr', nat64)} {addr_expr('saddr', mark.match)} "
                f"meta mark set meta mark and {keep:#010x} or {mark.value:#010x} "
                f"comment {_quote(f'zonectl zone={mark.zone} egress=own-pool')}"
            )
        body.append("\t}")
    return "\n".join(_replace("ip6", table, body)) + "\n"


def _quote_chain(zone: str) -> str:
    """Zone names are DNS labels, so ``zone-<name>`` is a valid bare nft identifier."""
    return _chain_name(zone)


@dataclass(frozen=True)
class NatPool:
    """One Tayga pool leaving by the uplink: masqueraded (shared) or SNATed to a zone's own address."""

    name: str
    pool: IPv4Network
    snat_to: IPv4Address | None = None


def render_nat(pools: Sequence[NatPool], uplink: str, *, table: str = NAT_TABLE) -> str:
    """IPv4 source NAT of the Tayga pools out of the uplink, in a table of zonectl's own."""
    checks.pattern(uplink, checks.IFNAME, "uplink", "an interface name")
    checks.pattern(table, checks.TOKEN, "table", "a table name")
    for p in pools:
        if not isinstance(p, NatPool):
            raise checks.refuse("pool", p, "is not a NatPool")
        checks.name(p.name, "pool name")
        checks.ipv4_net(p.pool, f"pool {p.name}")
        if p.snat_to is not None:
            checks.ipv4(p.snat_to, f"pool {p.name} snat address")
    body = [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    for p in sorted(pools, key=lambda p: (p.snat_to is None, p.name)):
        action = f"snat to {p.snat_to}" if p.snat_to is not None else "masquerade"
        body.append(f'\t\tip saddr {p.pool} oifname "{uplink}" counter {action} comment {_quote(f"zonectl pool={p.name}")}')
    body.append("\t}")
    return "\n".join(_replace("ip", table, body)) + "\n"


def render_delete(family: str, table: str) -> str:
    """Remove a zonectl table whether or not it exists (declare, then delete, in one transaction)."""
    checks.one_of(family, ("ip", "ip6", "inet"), "table family")
    checks.pattern(table, checks.TOKEN, "table", "a table name")
    return f"table {family} {table}\ndelete table {family} {table}\n"


def strip_counters(listing: str) -> str:
    """``nft list table`` output without counter values (what a re-apply compares)."""
    import re

    return re.sub(r"counter packets \d+ bytes \d+", "counter", listing)
