"""Compiled rules -> nftables: the zone filter in a table of zonectl's own, and the IPv4 NAT table.

Why tables of our own: nftables evaluates every base chain hooked at a point, so zonectl's table
can drop NAT64-bound traffic without reading or editing anyone else's tables, and replacing it is
one transaction (``table X`` / ``delete table X`` / ``table X {...}`` in one ``nft -f``).

The zone filter costs a packet the same whatever the number of rules: the source zone is one verdict
map lookup on the masked source address, and a zone's rules are resolved into disjoint elements of
verdict maps keyed by (IPv4 destination behind the NAT64 prefix, protocol, port or ICMPv6 type)
(``zonectl.render.partition``): hash maps for whole-byte prefixes with one port, an interval map for
the rest (``_maps``), so a zone with 10,000 destinations is still a lookup or two::

    forward        ip6 daddr <NAT64 prefix> jump zone-egress
    zone-egress    replies of static-map services accepted; ip6 saddr & <zone mask> vmap {zone -> zone-<z>};
                   counter "fail-closed" drop (no zone, unknown zone)
    zone-<z>       <IPv4 prefix bits> . meta l4proto . th dport vmap @ports.<z>.<n>.<len>   (hash)
                   <IPv4 bits> . meta l4proto . th dport vmap @ports.<z>.<n>   (TCP, UDP, SCTP; interval)
                   <IPv4 bits> . icmpv6 type vmap @icmp.<z>.<n>                (ICMPv6)
                   <IPv4 bits> vmap @any.<z>.<n>                               (rules for every protocol)
                   ... a rule the maps cannot hold, as written, between lookups ...
                   goto deny.<z> (closed), or the action of the zone's catch-all rule
    allow.<z>, deny.<z>   counter (named, what the metrics read) and the verdict

The key reads the IPv4 bits behind the prefix as raw header bits (``@nh,OFFSET,LEN``, hex in the
listing; each element's comment gives its range in dotted form).

Wildcard masks are written ``ip6 saddr & MASK == VALUE`` with VALUE already ANDed with MASK:
nftables compares the masked packet address to the value, so a value with bits outside the mask
would silently never match. Contiguous masks are written as plain prefixes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Sequence

from ..core.layout import AddrMatch
from ..core.rules import Rule
from . import checks
from .ip6tables import Counter, ZoneMark, ZoneMatch, check_marks, check_zones, rule_comment, zone_groups
from .partition import PORT_PROTOS, Element, Lookup, Space, program

FILTER_TABLE = "zonectl"
NAT_TABLE = "zonectl-nat"
PROTO = {"tcp": "tcp", "udp": "udp", "sctp": "sctp"}
FAIL_CLOSED = "fail-closed"
NH_DADDR = 192  # bit offset of the IPv6 destination address in the network header


def addr_expr(field: str, match: AddrMatch) -> str:
    """``ip6 saddr fd00::/64`` for a prefix, ``ip6 saddr & mask == value`` for a wildcard mask."""
    assert match.value & match.mask == match.value, "AddrMatch values are normalised"
    length = match.prefixlen
    if length is not None:
        return f"ip6 {field} {match.address}/{length}"
    return f"ip6 {field} & {match.netmask} == {match.address}"


def _quote(text: str) -> str:
    return '"' + checks.text(text[:128], "nft comment") + '"'


def match_expr(rule: Rule, *, with_src: bool = True) -> str:
    """The match part of a rule as one nft statement prefix (addresses, protocol, ports/type)."""
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
    return " ".join(parts)


def _replace(family: str, table: str, body: list[str]) -> list[str]:
    """Create-or-empty the table, delete it, recreate it: one atomic replacement in ``nft -f``."""
    return [f"table {family} {table}", f"delete table {family} {table}", f"table {family} {table} {{", *body, "}"]


class _Key:
    """How the IPv4 part of a destination is read and written for one NAT64 prefix.

    The key reads the 32 IPv4 bits straight from the header (``@nh,OFFSET,32``; split in two around the
    RFC 6052 u-octet for /40, /48 and /56 prefixes), not the 128-bit address: the kernel's concatenated
    interval set (pipapo) matches a key in 4-bit groups, so a 32-bit key costs a packet a quarter of
    what the whole address would. The listing shows these bits in hex, so each element carries its
    IPv4 range as a comment.
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self.fields = space.runs

    @property
    def expr(self) -> str:
        return " . ".join(f"@nh,{NH_DADDR + start},{length}" for start, length in self.fields)

    def values(self, lo: int, hi: int) -> list[str]:
        """The interval [lo, hi] of IPv4 addresses as one or more element keys (boxes over the fields)."""
        if len(self.fields) == 1:
            return [_range(lo, hi)]
        low_bits = self.fields[1][1]
        size = 1 << low_bits
        (a_hi, a_lo), (b_hi, b_lo) = divmod(lo, size), divmod(hi, size)
        if a_hi == b_hi:
            boxes = [(a_hi, a_hi, a_lo, b_lo)]
        else:
            boxes = []
            first, last = a_hi, b_hi
            if a_lo:
                boxes.append((a_hi, a_hi, a_lo, size - 1))
                first += 1
            tail = None
            if b_lo != size - 1:
                tail = (b_hi, b_hi, 0, b_lo)
                last -= 1
            if first <= last:
                boxes.append((first, last, 0, size - 1))
            if tail:
                boxes.append(tail)
        return [f"{_range(h1, h2)} . {_range(l1, l2)}" for h1, h2, l1, l2 in boxes]


def _dotted(lo: int, hi: int) -> str:
    """An IPv4 interval as people read it: 192.0.2.0/24, 192.0.2.7, or 192.0.2.0-192.0.2.130."""
    size = hi - lo + 1
    if lo == hi:
        return str(IPv4Address(lo))
    if not size & (size - 1) and not lo & (size - 1):
        return f"{IPv4Address(lo)}/{33 - size.bit_length()}"
    return f"{IPv4Address(lo)}-{IPv4Address(hi)}"


def _range(lo: int, hi: int) -> str:
    return f"{lo:#x}" if lo == hi else f"{lo:#x}-{hi:#x}"


def _ports(e: Element) -> str:
    return str(e.plo) if e.plo == e.phi else f"{e.plo}-{e.phi}"


def _elements(key: _Key, elements: Iterable[Element], zone: str) -> list[str]:
    out: list[str] = []
    for e in elements:
        tail = f" . {_tail(e)}" if _tail(e) else ""
        note = f' comment "{_dotted(e.lo, e.hi)}"'
        out += [f"{v}{tail}{note} : goto {e.action}.{zone}" for v in key.values(e.lo, e.hi)]
    return out


def _prefix_len(e: Element) -> int | None:
    """The length of the IPv4 prefix an element's interval is, if it is one of a whole number of bytes
    (/0, /8, /16, /24, /32) and its port or type is a single value (or it has none): such an element is an
    exact key of a hash map. Other lengths stay in the interval map: nft 1.0.6 reads a raw header field
    of, say, 25 bits as ``(@nh,288,32 & 0xffffff80) >> 7``, which never equals the key it stores for the
    element (tests/netns/test_filter_equivalence.py caught every such packet getting the wrong verdict)."""
    size = e.hi - e.lo + 1
    if size & (size - 1) or e.lo & (size - 1) or e.plo != e.phi:
        return None
    length = 33 - size.bit_length()
    return length if length % 8 == 0 else None


def _maps(key: _Key, zone: str, n: int, step: Lookup) -> tuple[list[str], list[str]]:
    """The verdict maps of one lookup step and the statements that consult them.

    Elements that are a whole IPv4 prefix (of whole bytes) with one port (or type) go to hash maps, one per length
    (``@nh,OFF,LEN`` reads just those bits): a hash lookup costs the same for 10 or 10,000 elements,
    where the interval map's work grows with its elements (pipapo ANDs a bit per element per 4-bit
    group: measured here, 10,000 elements cost a forwarded packet three times what a hash map does).
    The rest go to one interval map. The elements are disjoint, so at most one map answers, whatever the
    order they are consulted in.
    """
    body: list[str] = []
    statements: list[str] = []
    kinds = (("ports", "meta l4proto . th dport", PORT_PROTOS), ("icmp", "icmpv6 type", ("icmpv6",)), ("any", "", ("any",)))
    for kind, extra, planes in kinds:
        elements = [e for e in step.elements if e.plane in planes]
        exact: dict[int, list[Element]] = {}
        ranges: list[Element] = []
        for e in elements:
            length = _prefix_len(e) if len(key.fields) == 1 else None
            if length is not None and (length or extra):  # a key needs at least one field
                exact.setdefault(length, []).append(e)
            else:
                ranges.append(e)
        for length in sorted(exact, reverse=True):
            fields = [f"@nh,{NH_DADDR + key.fields[0][0]},{length}"] if length else []
            typeof = " . ".join([*fields, *([extra] if extra else [])])
            name = f"{kind}.{zone}.{n}.{length}"
            values = [(f"{e.lo >> (32 - length):#x}" if length else None, e) for e in exact[length]]
            lines = [" . ".join(x for x in (v, _tail(e)) if x) + f' comment "{_dotted(e.lo, e.hi)}" : goto {e.action}.{zone}'
                     for v, e in values]
            body += [f"\tmap {name} {{", f"\t\ttypeof {typeof} : verdict", "\t\telements = {",
                     *(f"\t\t\t{x}," for x in lines), "\t\t}", "\t}"]
            statements.append(f"{typeof} vmap @{name}")
        if ranges:
            name = f"{kind}.{zone}.{n}"
            typeof = f"{key.expr} . {extra}" if extra else key.expr
            body += [f"\tmap {name} {{", f"\t\ttypeof {typeof} : verdict", "\t\tflags interval",
                     "\t\telements = {", *(f"\t\t\t{x}," for x in _elements(key, ranges, zone)), "\t\t}", "\t}"]
            statements.append(f"{typeof} vmap @{name}")
    return body, statements


def _tail(e: Element) -> str:
    """The protocol/port or type part of an element's key ("" for the any plane)."""
    if e.plane == "any":
        return ""
    return f"{e.plane} . {_ports(e)}" if e.plane in PORT_PROTOS else _ports(e)


def _zone(key: _Key, zone: str, rules: Sequence[Rule]) -> list[str]:
    """A zone's chain, its maps, its two counting chains and their named counters."""
    body: list[str] = []
    for action in ("allow", "deny"):
        verdict = "accept" if action == "allow" else "drop"
        body += [f"\tcounter {action}.{zone} {{", f"\t\tcomment {_quote(f'zonectl zone={zone} action={action}')}", "\t}",
                 f"\tchain {action}.{zone} {{", f'\t\tcounter name "{action}.{zone}" {verdict}', "\t}"]
    prog = program(rules, key.space)
    statements: list[str] = []
    for n, step in enumerate(prog.steps, start=1):
        if isinstance(step, Lookup):
            maps, lookups = _maps(key, zone, n, step)
            body += maps
            statements += lookups
        else:
            statements.append(f"{match_expr(step, with_src=False)} goto {step.action}.{zone} "
                              f"comment {_quote(rule_comment(step))}")
    statements.append(f"goto {prog.final or 'deny'}.{zone}")
    body += [f"\tchain zone-{zone} {{", *(f"\t\t{s}" for s in statements), "\t}"]
    return body


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

    When every zone shares one mask (one layout, cluster scope) the dispatch is a single verdict map
    lookup on the masked source address, otherwise one rule per zone.
    """
    rules = checks.rules(rules)
    check_zones(zones)
    check_marks(marks)
    checks.match(nat64, "NAT64 prefix")
    if nat64.prefixlen not in (32, 40, 48, 56, 64, 96):
        raise checks.refuse("NAT64 prefix", nat64.text, "is not a /32, /40, /48, /56, /64 or /96 prefix")
    checks.pattern(table, checks.TOKEN, "table", "a table name")
    ingress = [checks.match(m, "static map") for m in ingress]
    groups = zone_groups(rules, zones)
    key = _Key(Space(nat64))
    body = [
        "\tcounter fail-closed {",
        f"\t\tcomment {_quote('zonectl zone=- action=deny fail-closed')}",
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        f"\t\t{addr_expr('daddr', nat64)} jump zone-egress",
        "\t}",
    ]
    for name, _, zrules in groups:
        body += _zone(key, name, zrules)
    body.append("\tchain zone-egress {")
    for svc in ingress:
        body.append(f"\t\t{addr_expr('saddr', svc)} ct direction reply counter accept "
                    f"comment {_quote('zonectl ingress-map replies')}")
    masks = {m.mask for _, m, _ in groups if m is not None}
    if groups and len(masks) == 1 and all(m is not None and m.prefixlen is None for _, m, _ in groups):
        mask = AddrMatch(0, masks.pop()).netmask
        entries = ", ".join(f"{m.address} : goto zone-{name}" for name, m, _ in groups if m is not None)
        body.append(f"\t\tip6 saddr & {mask} vmap {{ {entries} }}")
    else:
        for name, zm, _ in groups:
            src = f"{addr_expr('saddr', zm)} " if zm is not None and not zm.is_any else ""
            body.append(f"\t\t{src}goto zone-{name}")
    body.append(f'\t\tcounter name "{FAIL_CLOSED}" drop')
    body.append("\t}")
    if marks:
        body += [
            "\tchain prerouting {",
            "\t\ttype filter hook prerouting priority mangle; policy accept;",
        ]
        for svc in ingress:  # a mapped service's replies go to the shared Tayga, which holds its map
            body.append(f"\t\t{addr_expr('daddr', nat64)} {addr_expr('saddr', svc)} ct direction reply "
                        f"return comment {_quote('zonectl ingress-map replies')}")
        for mark in sorted(marks, key=lambda mk: mk.zone):
            keep = ~mark.mask & 0xFFFFFFFF
            body.append(
                f"\t\t{addr_expr('daddr', nat64)} {addr_expr('saddr', mark.match)} "
                f"meta mark set meta mark and {keep:#010x} or {mark.value:#010x} "
                f"comment {_quote(f'zonectl zone={mark.zone} egress=own-pool')}"
            )
        body.append("\t}")
    return "\n".join(_replace("ip6", table, body)) + "\n"


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
    text = re.sub(r"counter packets \d+ bytes \d+", "counter", listing)
    return re.sub(r"\n\s*packets \d+ bytes \d+", "", text)


def parse_counters(listing_json: str) -> list[Counter]:
    """The named counters of ``nft -j list counters table ip6 zonectl`` whose comment names a zone and
    an action (``zonectl zone=dmz action=allow``): what the metrics and ``gateway status`` report."""
    out: list[Counter] = []
    for item in json.loads(listing_json).get("nftables", []):
        c = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(c, dict):
            continue
        comment = str(c.get("comment", ""))
        if comment.startswith("zonectl ") and " action=" in comment:
            out.append(Counter(str(c.get("name", "")), comment, int(c.get("packets", 0)), int(c.get("bytes", 0))))
    return out
