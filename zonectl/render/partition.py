"""A zone's ordered gateway rules -> disjoint key-space boxes with a verdict (pure).

Why: ip6tables walks a zone's rules in order and the first match decides, so a packet pays for every
rule before the one that matches. An nftables verdict map answers "which element holds this key" at a
cost that does not grow with its size, but only when no two elements overlap (the kernel refuses
elements whose ends fall inside another, and which of two nested ones answers is unspecified). So the
first-match semantics are resolved here, once per apply: the key space (IPv4 destination behind the
NAT64 prefix x protocol x destination port or ICMPv6 type) is cut into boxes in which the same rule
matches first, and each box carries that rule's action. Looking a packet up in those boxes gives the
verdict the ordered list gives; tests/unit/test_partition.py and tests/netns/test_filter_equivalence.py
check that against the ordered semantics and against the kernel running both renderings.

What the key can hold: a rule whose destination is "the IPv4 network N behind the prefix" (every
``nat64:`` peer) or covers the whole prefix (``any``, a wider CIDR). The first is an interval of IPv4
addresses; the u-octet and suffix bits RFC 6052 puts around them are never constrained by such rules,
so the key reads only the IPv4 bits. Any other destination (a hand-written wildcard inside the prefix)
cannot be an interval: such a rule stays a statement of its own between two lookups (a "step"), which
keeps the order exact. Rules after one that matches every packet are dead and dropped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network
from typing import Iterable, Sequence

from ..core.layout import AddrMatch
from ..core.nat64 import Nat64Prefix
from ..core.rules import Rule

MAX4 = 0xFFFFFFFF
PORT_PROTOS = ("tcp", "udp", "sctp")
PLANES = ("tcp", "udp", "sctp", "icmpv6", "any")  # "any": protocols without ports or types
TOP = {"tcp": 65535, "udp": 65535, "sctp": 65535, "icmpv6": 255, "any": 0}

Segments = tuple[tuple[int, int, str], ...]  # (lo, hi, action), sorted, adjacent same actions merged


@dataclass(frozen=True)
class Element:
    """One map element: IPv4 interval x plane x port/type interval -> action (plane "any": no range)."""

    lo: int
    hi: int
    plane: str
    plo: int
    phi: int
    action: str


@dataclass(frozen=True)
class Lookup:
    """A run of rules resolved into disjoint elements: looked up at once, no element = no rule matched."""

    elements: tuple[Element, ...]
    rules: int  # how many rules it stands for

    def of(self, plane: str) -> tuple[Element, ...]:
        return tuple(e for e in self.elements if e.plane == plane)


Step = Lookup | Rule  # a Rule here is one the key cannot hold: matched as written


@dataclass(frozen=True)
class ZoneProgram:
    """A zone's filter: its steps in order, then ``final`` (the action of a rule matching everything, or
    None: closed, dropped)."""

    steps: tuple[Step, ...]
    final: str | None


@dataclass(frozen=True)
class _Box:
    lo: int
    hi: int
    proto: str | None
    plo: int
    phi: int
    action: str


class Space:
    """The key space behind one NAT64 prefix: which destinations are IPv4 intervals."""

    def __init__(self, nat64: AddrMatch) -> None:
        if nat64.prefixlen is None:
            raise ValueError("the NAT64 prefix is a contiguous prefix")
        self.prefix = nat64
        self.nat64 = Nat64Prefix(IPv6Network((nat64.address, nat64.prefixlen)))
        base = int(self.nat64.network.network_address)
        self.v4bits = int(self.nat64.embed(IPv4Address(MAX4))) ^ base  # where the IPv4 bits sit
        # the IPv4 bits as runs of (bit offset from the address' first bit, length): one, or two around
        # the RFC 6052 u-octet
        self.runs: list[tuple[int, int]] = []
        for pos in (127 - i for i in range(127, -1, -1) if self.v4bits >> i & 1):
            if self.runs and sum(self.runs[-1]) == pos:
                self.runs[-1] = (self.runs[-1][0], self.runs[-1][1] + 1)
            else:
                self.runs.append((pos, 1))

    def gather(self, value: int) -> int:
        """The 32 IPv4 bits of a 128-bit value (RFC 6052 placement), as an integer."""
        out = 0
        for start, length in self.runs:
            out = out << length | (value >> (128 - start - length)) & ((1 << length) - 1)
        return out

    def ipv4_interval(self, dst: AddrMatch | None) -> tuple[int, int] | None:
        """The IPv4 interval a destination is, or None if it is not one (or matches nothing here)."""
        if dst is None or dst.covers(self.prefix):
            return (0, MAX4)
        if not self.prefix.covers(dst):
            return None
        extra = dst.mask & ~self.prefix.mask
        if extra & ~self.v4bits:
            return None
        m4 = self.gather(extra)
        if (~m4 & MAX4) & ((~m4 & MAX4) + 1):
            return None  # not a prefix of the IPv4 address
        v4 = self.gather(dst.value)
        return (v4, v4 | (~m4 & MAX4))

    def intersects(self, dst: AddrMatch | None) -> bool:
        return dst is None or not ((dst.value ^ self.prefix.value) & dst.mask & self.prefix.mask)


def _box(rule: Rule, interval: tuple[int, int]) -> _Box:
    if rule.protocol in PORT_PROTOS:
        lo, hi = (rule.port_min, rule.port_max or rule.port_min) if rule.port_min is not None else (0, 65535)
    elif rule.protocol == "icmpv6":
        lo, hi = (rule.icmp_type, rule.icmp_type) if rule.icmp_type is not None else (0, 255)
    else:
        lo, hi = 0, 0
    return _Box(interval[0], interval[1], rule.protocol, lo, hi, rule.action)


def program(rules: Sequence[Rule], space: Space) -> ZoneProgram:
    """The zone's rules (in evaluation order) as lookups and as-written rules; same verdict per packet."""
    steps: list[Step] = []
    run: list[_Box] = []
    for rule in rules:
        if not space.intersects(rule.dst):
            continue  # can never match a packet to the NAT64 prefix
        interval = space.ipv4_interval(rule.dst)
        if interval is None:
            if run:
                steps.append(_lookup(run))
                run = []
            steps.append(rule)
            continue
        if interval == (0, MAX4) and rule.protocol is None:  # matches every packet: the rest is dead
            if run:
                steps.append(_lookup(run))
            return ZoneProgram(tuple(steps), rule.action)
        box = _box(rule, interval)
        if run and _everywhere(run[-1]) != _everywhere(box):
            steps.append(_lookup(run))  # see _everywhere
            run = []
        run.append(box)
    if run:
        steps.append(_lookup(run))
    return ZoneProgram(tuple(steps), None)


def _everywhere(box: _Box) -> bool:
    """Rules for every IPv4 destination (``any`` peers) and rules for some (``nat64`` peers) go to separate
    lookups. Resolved together, an "everywhere" rule would give an element to every gap between the
    others' networks, and a gap is an arbitrary range, which the kernel's set (pipapo) stores as up to
    ~60 prefixes; apart, it is one element. The number of lookups then grows with how often the two
    kinds alternate in a zone's rules, never with the number of rules."""
    return (box.lo, box.hi) == (0, MAX4)


def first_match(items: Iterable[tuple[int, int, str]], top: int) -> Segments:
    """1-D first match: ``items`` (lo, hi, action) in order -> which action owns each point of [0, top]."""
    starts, ends = [0], [top]  # the points no item has claimed yet, as sorted disjoint intervals
    out: list[tuple[int, int, str]] = []
    for lo, hi, act in items:
        if not starts:
            break
        k = bisect_left(ends, lo)
        m = k
        while m < len(starts) and starts[m] <= hi:
            m += 1
        if m == k:
            continue
        keep_s: list[int] = []
        keep_e: list[int] = []
        for f in range(k, m):
            s, e = starts[f], ends[f]
            a, b = max(s, lo), min(e, hi)
            out.append((a, b, act))
            if s < a:
                keep_s.append(s)
                keep_e.append(a - 1)
            if b < e:
                keep_s.append(b + 1)
                keep_e.append(e)
        starts[k:m] = keep_s
        ends[k:m] = keep_e
    out.sort()
    merged: list[tuple[int, int, str]] = []
    for a, b, act in out:
        if merged and merged[-1][2] == act and merged[-1][1] + 1 == a:
            merged[-1] = (merged[-1][0], b, act)
        else:
            merged.append((a, b, act))
    return tuple(merged)


def _signature(boxes: Sequence[_Box]) -> tuple[Segments, ...]:
    """Per plane, which action owns each port/type, for boxes that all cover one IPv4 interval (in order)."""
    items: dict[str, list[tuple[int, int, str]]] = {plane: [] for plane in PLANES}
    for b in boxes:
        if b.proto is None:  # every protocol: the whole range of each plane
            for plane in PLANES:
                items[plane].append((0, TOP[plane], b.action))
        else:
            items[b.proto].append((b.plo, b.phi, b.action))
    return tuple(first_match(items[p], TOP[p]) if len(items[p]) > 1 else tuple(items[p]) for p in PLANES)


def _lookup(boxes: Sequence[_Box]) -> Lookup:
    """Sweep the IPv4 axis: between consecutive interval ends the set of boxes that apply is constant,
    so is the answer; equal answers side by side are merged. Boxes covering every IPv4 address are kept
    apart, so the cache key (the rest of the active set) stays small when there are many of them."""
    everywhere = [i for i, b in enumerate(boxes) if (b.lo, b.hi) == (0, MAX4)]
    starts: dict[int, list[int]] = defaultdict(list)
    stops: dict[int, list[int]] = defaultdict(list)
    for i, b in enumerate(boxes):
        if (b.lo, b.hi) != (0, MAX4):
            starts[b.lo].append(i)
            stops[b.hi + 1].append(i)
    points = sorted({0, *starts, *(p for p in stops if p <= MAX4)})
    active: set[int] = set()
    cache: dict[frozenset[int], tuple[Segments, ...]] = {}
    runs: list[list] = []  # [lo, hi, signature]
    for n, p in enumerate(points):
        active.difference_update(stops.get(p, ()))
        active.update(starts.get(p, ()))
        hi = points[n + 1] - 1 if n + 1 < len(points) else MAX4
        key = frozenset(active)
        sig = cache.get(key)
        if sig is None:
            order = sorted(everywhere + list(active))
            sig = cache[key] = _signature([boxes[i] for i in order])
        if runs and runs[-1][2] == sig:
            runs[-1][1] = hi
        else:
            runs.append([p, hi, sig])
    elements: list[Element] = []
    for lo, hi, sig in runs:
        for plane, segments in zip(PLANES, sig, strict=True):
            elements += [Element(lo, hi, plane, a, b, act) for a, b, act in segments]
    return Lookup(tuple(elements), len(boxes))
