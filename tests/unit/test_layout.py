"""Address layout: codec round trips, wildcard masks and CIDR expansion, for random layouts."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zonectl.core.errors import ValidationError
from zonectl.core.layout import ALL_ONES, AddrMatch, Layout, bit_range, ipv6_text, prefix_mask

CLUSTER = IPv6Network("fd00:10:244::/48")
DC = IPv6Network("fd00:10:200::/40")
DEFAULT = Layout(CLUSTER, datacenter=DC)


def test_readme_example_masks() -> None:
    assert DEFAULT.zone_match(0x2000, "cluster").text == "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"
    # value AND mask: the 0x44 of "244" lies outside the /40 datacenter prefix, so it is cleared
    assert DEFAULT.zone_match(0x2000, "datacenter").text == "fd00:10:200:0:2000::/ffff:ffff:ff00:0:ffff::"


def test_encode_and_explain_example() -> None:
    addr = DEFAULT.encode("fd00:10:244:2::/64", 0x2000, 5)
    assert addr == IPv6Address("fd00:10:244:2:2000::5")
    ex = DEFAULT.explain(addr, {0x2000: "dmz"})
    assert (ex.in_cluster, ex.node, ex.zone_id, ex.zone_name, ex.offset) == (
        True, IPv6Network("fd00:10:244:2::/64"), 0x2000, "dmz", 5)
    text = str(ex)
    assert "fd00:10:244:2::/64" in text and "dmz (0x2000)" in text and "offset:   5" in text


def test_explain_outside_cluster() -> None:
    ex = DEFAULT.explain("fd00:10:245:1:2000::5")
    assert not ex.in_cluster and ex.in_datacenter
    assert "not in this cluster" in str(ex)
    assert not DEFAULT.explain("2001:db8::1").in_datacenter


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(zone_offset=56), "overlaps the node prefix bits 0-63"),
        (dict(zone_offset=104, zone_width=16), "overlaps the IPAM offset bits 112-127"),
        (dict(zone_offset=100, zone_width=16, ipam_bits=17), "overlapping bits 111-115"),
        (dict(node_prefix_len=40), "must be from the cluster prefix length /48"),
        (dict(datacenter=IPv6Network("fd00:20::/40")), "does not contain the cluster prefix"),
        (dict(zone_width=0), "must be between 1 and 32"),
    ],
)
def test_bad_layouts_say_which_bits(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Layout(CLUSTER, **kwargs)
    assert message in str(err.value)


def test_encode_rejects_bad_inputs() -> None:
    with pytest.raises(ValidationError, match="not a /64"):
        DEFAULT.encode("fd00:10:244:2::/80", 1, 1)
    with pytest.raises(ValidationError, match="not inside the cluster"):
        DEFAULT.encode("fd00:10:245:2::/64", 1, 1)
    with pytest.raises(ValidationError, match="does not fit the 16-bit zone field"):
        DEFAULT.encode("fd00:10:244:2::/64", 0x10000, 1)
    with pytest.raises(ValidationError, match="touching the zone field"):
        DEFAULT.encode("fd00:10:244:2::/64", 1, 1 << 48)


def test_expand_default_is_one_80_per_node() -> None:
    nets = DEFAULT.expand(0x2000, ["fd00:10:244:3::/64", "fd00:10:244:2::/64"])
    assert nets == [IPv6Network("fd00:10:244:2:2000::/80"), IPv6Network("fd00:10:244:3:2000::/80")]


def test_expand_with_gap_and_limit() -> None:
    layout = Layout(CLUSTER, zone_offset=66, zone_width=8, ipam_bits=16)
    nets = layout.expand(0x5, ["fd00:10:244:2::/64"])
    assert len(nets) == 4 and all(n.prefixlen == 74 for n in nets)
    wide = Layout(CLUSTER, zone_offset=90, zone_width=8, ipam_bits=16)
    with pytest.raises(ValidationError, match="use wildcard masks instead"):
        wide.expand(1, ["fd00:10:244:2::/64"])


def test_addrmatch_parse_and_normalise() -> None:
    m = AddrMatch.parse("fd00:10:244:ffff:2000::1/ffff:ffff:ffff:0:ffff::")
    assert m.text == "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"
    assert m.prefixlen is None
    assert AddrMatch.parse("2001:db8::/32").prefixlen == 32
    assert AddrMatch.parse("2001:db8::1").mask == ALL_ONES
    assert AddrMatch.parse("2001:db8::/32").covers(AddrMatch.parse("2001:db8:1::/48"))
    assert not AddrMatch.parse("2001:db8:1::/48").covers(AddrMatch.parse("2001:db8::/32"))
    with pytest.raises(ValueError):
        AddrMatch.parse("2001:db8::/129")


def test_bit_range_text() -> None:
    assert bit_range(prefix_mask(64)) == "bits 0-63"
    assert bit_range(1) == "bit 127"
    assert bit_range(0) == "no bits"


# --- properties over random layouts ------------------------------------------------------------

@st.composite
def layouts(draw: st.DrawFn, max_gap: int = 128) -> Layout:
    cluster_len = draw(st.integers(16, 60))
    node_len = draw(st.integers(cluster_len + 1, 64))
    ipam = draw(st.integers(8, 32))
    width = draw(st.integers(1, 24))
    offset = draw(st.integers(node_len, min(node_len + max_gap, 128 - ipam - width)))
    cluster_bits = draw(st.integers(0, (1 << cluster_len) - 1))
    cluster = IPv6Network(((0xFD << 120 | cluster_bits << (128 - cluster_len)) & prefix_mask(cluster_len), cluster_len))
    dc_len = draw(st.integers(8, cluster_len))
    datacenter = IPv6Network((int(cluster.network_address) & prefix_mask(dc_len), dc_len))
    return Layout(cluster, node_len, offset, width, datacenter, ipam)


@st.composite
def layout_and_pod(draw: st.DrawFn, max_gap: int = 128):
    layout = draw(layouts(max_gap))
    node_index = draw(st.integers(0, (1 << (layout.node_prefix_len - layout.cluster.prefixlen)) - 1))
    node = IPv6Network((int(layout.cluster.network_address) | node_index << (128 - layout.node_prefix_len), layout.node_prefix_len))
    zone = draw(st.integers(0, layout.max_zone_id))
    host = ~layout.node_mask & ~layout.field_mask & ALL_ONES
    offset = draw(st.integers(0, ALL_ONES)) & host
    return layout, node, zone, offset


@settings(max_examples=300)
@given(layout_and_pod())
def test_encode_explain_round_trip(case) -> None:
    layout, node, zone, offset = case
    addr = layout.encode(node, zone, offset)
    ex = layout.explain(addr)
    assert (ex.in_cluster, ex.node, ex.zone_id, ex.offset) == (True, node, zone, offset)


@settings(max_examples=300)
@given(layouts(), st.integers(0, ALL_ONES), st.data())
def test_zone_match_selects_exactly_the_zone(layout: Layout, raw: int, data) -> None:
    zone = data.draw(st.integers(1, layout.max_zone_id))
    # half the time, force the address into the zone so both outcomes are exercised
    if data.draw(st.booleans()):
        raw = (raw & ~layout.field_mask) | (zone << layout.field_shift)
    if data.draw(st.booleans()):
        raw = (raw & ~prefix_mask(layout.cluster.prefixlen)) | int(layout.cluster.network_address)
    addr = IPv6Address(raw)
    # the expectation is computed from the bits directly, not with the code under test
    field = (raw >> (128 - layout.zone_offset - layout.zone_width)) & ((1 << layout.zone_width) - 1)

    def same_prefix(net: IPv6Network) -> bool:
        return raw >> (128 - net.prefixlen) == int(net.network_address) >> (128 - net.prefixlen)

    cluster_match = layout.zone_match(zone, "cluster")
    assert cluster_match.matches(addr) == (same_prefix(layout.cluster) and field == zone)
    assert cluster_match.value & ~cluster_match.mask == 0
    dc = layout.datacenter
    assert dc is not None
    assert layout.zone_match(zone, "datacenter").matches(addr) == (same_prefix(dc) and field == zone)


@settings(max_examples=100)
@given(layout_and_pod(max_gap=6))
def test_expand_equals_mask_restricted_to_nodes(case) -> None:
    """A pod is inside the expanded CIDRs of its node exactly when the wildcard mask says so."""
    layout, node, zone, offset = case
    assume(zone)
    addr = layout.encode(node, zone, offset)
    nets = layout.expand(zone, [node])
    assert any(addr in n for n in nets)
    other_zone = IPv6Address(int(addr) ^ (1 << layout.field_shift))
    assert not any(other_zone in n for n in nets)



HEXTETS = st.lists(st.sampled_from([0, 0, 0, 1, 0xA, 0xFFFF, 0x2000, 0xFD00]), min_size=8, max_size=8).map(
    lambda ws: sum(w << (112 - 16 * i) for i, w in enumerate(ws)))  # runs of zeros everywhere, ties too


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, ALL_ONES) | HEXTETS | st.integers(0, 1 << 64))
def test_ipv6_text_is_what_ipaddress_writes(value: int) -> None:
    """The fast formatter every export uses writes exactly what ``ipaddress`` writes (RFC 5952)."""
    assert ipv6_text(value) == str(IPv6Address(value))
