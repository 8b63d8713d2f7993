"""The nftables zone filter's verdict maps give the verdicts of the ordered rule list (pure).

``zonectl.render.partition`` turns a zone's ordered rules into disjoint map elements. For random rule
lists (overlapping networks, port ranges, protocols, ICMPv6 types, wildcards the maps cannot hold,
catch-alls and dead rules) and packets aimed at every edge, evaluating the elements gives what the
ordered list gives, for every NAT64 prefix length. tests/netns/test_filter_equivalence.py checks the
same against the kernel running both renderings.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filtermodel import Packet, random_packets, random_rules, reference, run_program
from zonectl.core.layout import AddrMatch, prefix_mask
from zonectl.core.nat64 import Nat64Prefix
from zonectl.core.rules import Rule, rule_id
from zonectl.render.partition import MAX4, Lookup, Space, first_match, program

PREFIXES = ["fd64:ff9b::/96", "fd64:ff9b:0:1::/64", "2001:db8:100::/40", "2001:db8::/32"]


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), prefix=st.sampled_from(PREFIXES), n=st.integers(0, 40))
def test_elements_give_the_ordered_verdict(seed: int, prefix: str, n: int) -> None:
    rnd = random.Random(seed)
    nat64 = Nat64Prefix.parse(prefix)
    space = Space(AddrMatch.from_network(nat64.network))
    rules = random_rules(rnd, nat64, n)
    prog = program(rules, space)
    for p in random_packets(rnd, nat64, rules, 200):
        assert run_program(prog, space, p) == reference(rules, p), (p, rules)


@settings(max_examples=1000)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), st.sampled_from("ad")), max_size=10))
def test_first_match_1d(items) -> None:
    items = [(min(a, b), max(a, b), act) for a, b, act in items]
    segs = first_match(items, 12)
    owner = {x: next((act for lo, hi, act in items if lo <= x <= hi), None) for x in range(13)}
    got = {x: act for lo, hi, act in segs for x in range(lo, hi + 1)}
    assert got == {x: a for x, a in owner.items() if a is not None}
    assert all(segs[i][1] < segs[i + 1][0] for i in range(len(segs) - 1))  # disjoint, sorted
    assert all(not (segs[i][1] + 1 == segs[i + 1][0] and segs[i][2] == segs[i + 1][2]) for i in range(len(segs) - 1))


def _rule(i: int, **kw) -> Rule:
    base = dict(id=rule_id("t", i), policy="t/p", zone="z", direction="egress", action="allow", order=i, src=None,
                dst=None, nat64=True)
    return Rule(**{**base, **kw})  # type: ignore[arg-type]


def test_a_catch_all_ends_the_program_and_later_rules_are_dead() -> None:
    nat64 = Nat64Prefix.parse("fd64:ff9b::/96")
    rules = [_rule(0, action="allow"), *random_rules(random.Random(3), nat64, 5)]
    prog = program(rules, Space(AddrMatch.from_network(nat64.network)))
    assert prog.steps == () and prog.final == "allow"


def test_many_rules_are_one_lookup_of_as_many_elements() -> None:
    """10,000 /24 destinations with one port each (the benchmark's worst case): one lookup step, one
    element per rule; the zone's default Deny is the final action, not 10,000 gap elements."""
    nat64 = Nat64Prefix.parse("fd64:ff9b::/96")
    space = Space(AddrMatch.from_network(nat64.network))
    nets = random.Random(1).sample(range(2**24), 10_000)
    rules = [_rule(i, dst=nat64.embed_network(IPv4Network((n << 8, 24))), protocol="tcp", port_min=1000 + i % 5000,
                   port_max=1000 + i % 5000) for i, n in enumerate(nets)]
    prog = program([*rules, _rule(10_000, action="deny", is_default=True)], space)
    (step,) = prog.steps
    assert isinstance(step, Lookup) and len(step.elements) == 10_000 and step.rules == 10_000 and prog.final == "deny"
    last = rules[-1]
    inside = int(nat64.embed(IPv4Address((nets[-1] << 8) + 7)))
    assert run_program(prog, space, Packet(inside, "tcp", last.port_min)) == "allow"
    assert run_program(prog, space, Packet(inside, "tcp", last.port_min + 1)) == "deny"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_nat64_networks_are_intervals_and_hand_written_wildcards_are_not(prefix: str) -> None:
    nat64 = Nat64Prefix.parse(prefix)
    space = Space(AddrMatch.from_network(nat64.network))
    assert space.ipv4_interval(nat64.embed_network("192.0.2.0/24")) == (0xC0000200, 0xC00002FF)
    assert space.ipv4_interval(nat64.embed_network("0.0.0.0/0")) == (0, MAX4)
    assert space.ipv4_interval(None) == (0, MAX4)
    wide = AddrMatch(int(nat64.network.network_address), prefix_mask(8))
    assert space.ipv4_interval(wide) == (0, MAX4)  # covers the whole prefix
    host = nat64.embed_network("192.0.2.5/32")
    hole = int(nat64.embed("0.0.0.16")) ^ int(nat64.network.network_address)
    assert space.ipv4_interval(AddrMatch(host.value, host.mask & ~hole)) is None  # not a prefix of the IPv4 bits
    assert not space.intersects(AddrMatch.from_network("fd99::/64"))


def test_rules_for_every_destination_are_looked_up_apart_from_the_others() -> None:
    """A Deny for TCP/22 to anywhere before 1,000 networks: two lookups of 1 and 1,000 elements, not
    1,000 networks plus a TCP/22 element for each of the 1,001 arbitrary gaps between them."""
    nat64 = Nat64Prefix.parse("fd64:ff9b::/96")
    space = Space(AddrMatch.from_network(nat64.network))
    nets = sorted(random.Random(2).sample(range(2**24), 1000))
    rules = [_rule(0, action="deny", protocol="tcp", port_min=22, port_max=22)]
    rules += [_rule(i + 1, dst=nat64.embed_network(IPv4Network((n << 8, 24))), protocol="tcp", port_min=443,
                    port_max=443) for i, n in enumerate(nets)]
    prog = program(rules, space)
    assert [len(s.elements) for s in prog.steps if isinstance(s, Lookup)] == [1, 1000]
    inside = int(nat64.embed(IPv4Address(nets[5] << 8)))
    assert run_program(prog, space, Packet(inside, "tcp", 22)) == "deny"
    assert run_program(prog, space, Packet(inside, "tcp", 443)) == "allow"
