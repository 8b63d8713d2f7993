"""Zone registry validation and the NAT64 prefix embedding (RFC 6052)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zonectl.core.errors import ValidationError
from zonectl.core.layout import Layout
from zonectl.core.nat64 import Nat64Prefix
from zonectl.core.zones import ZoneRegistry

LAYOUT = Layout(IPv6Network("fd00:10:244::/48"), datacenter=IPv6Network("fd00:10:200::/40"))


def zone(name: str, zid, **spec) -> dict:
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": name}, "spec": {"id": zid, **spec}}


def test_examples_load(example_zones: ZoneRegistry) -> None:
    assert [z.name for z in example_zones] == ["dmz", "web", "db"]
    assert example_zones.require("dmz").id == 0x2000
    assert str(example_zones.require("web").egress.address) == "198.51.100.21"


def test_duplicate_id_names_both_zones() -> None:
    with pytest.raises(ValidationError) as err:
        ZoneRegistry.from_objects(LAYOUT, [zone("dmz", 0x2000), zone("edge", 0x2000)])
    assert "zones 'dmz' and 'edge' both use id 0x2000" in str(err.value)


def test_duplicate_name() -> None:
    with pytest.raises(ValidationError, match="defined twice"):
        ZoneRegistry.from_objects(LAYOUT, [zone("dmz", 1), zone("dmz", 2)])


@pytest.mark.parametrize(
    "zid, message",
    [(0, "0 is reserved"), (0x10000, "does not fit the 16-bit zone field"), ("abc", "must be an integer"),
     ([1], "must be an integer"), (True, "must be an integer"), (2.5, "must be an integer"), (None, "is required")],
)
def test_bad_ids(zid, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ZoneRegistry.from_objects(LAYOUT, [zone("dmz", zid)])
    assert "spec.id" in str(err.value) and message in str(err.value)


def test_string_hex_id_accepted() -> None:
    assert ZoneRegistry.from_objects(LAYOUT, [zone("dmz", "0x2000")]).require("dmz").id == 0x2000


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        ZoneRegistry.from_objects(LAYOUT, [zone("Bad_Name", 0), zone("ok", 3, egress={"pool": "10.0.0.0/33", "address": "x"})])
    text = str(err.value)
    assert "metadata.name" in text and "spec.id" in text and "spec.egress.pool" in text


def test_namespace_permission() -> None:
    reg = ZoneRegistry.from_objects(LAYOUT, [zone("dmz", 1, namespaces=["a"], namespaceSelector={
        "matchLabels": {"team": "edge"},
        "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]})])
    z = reg.require("dmz")
    assert z.allows_namespace("a")
    assert z.allows_namespace("b", {"team": "edge", "env": "prod"})
    assert not z.allows_namespace("b", {"team": "edge", "env": "dev"})
    assert not z.allows_namespace("b", {"team": "core"})
    bare = ZoneRegistry.from_objects(LAYOUT, [zone("db", 2)]).require("db")
    assert not bare.allows_namespace("anything", {"x": "y"})  # default: none but those listed


def test_bad_selector_operator() -> None:
    with pytest.raises(ValidationError, match="operator.*'Maybe' is not one of"):
        ZoneRegistry.from_objects(LAYOUT, [zone("dmz", 1, namespaceSelector={"matchExpressions": [{"key": "a", "operator": "Maybe"}]})])


def test_unknown_zone_lists_known() -> None:
    reg = ZoneRegistry.from_objects(LAYOUT, [zone("dmz", 1)])
    with pytest.raises(ValidationError, match=r"unknown zone 'web' \(known zones: dmz\)"):
        reg.require("web")


# --- NAT64 -------------------------------------------------------------------------------------

def test_nat64_96() -> None:
    p = Nat64Prefix.parse("fd64:ff9b::/96")
    assert str(p.embed("198.51.100.7")) == "fd64:ff9b::c633:6407"
    assert p.embed_network("198.51.100.0/24").cidr_or_mask == "fd64:ff9b::c633:6400/120"


def test_nat64_rfc6052_examples() -> None:
    # RFC 6052 section 2.4 table, IPv4 192.0.2.33
    cases = {
        "2001:db8::/32": "2001:db8:c000:221::",
        "2001:db8:100::/40": "2001:db8:1c0:2:21::",
        "2001:db8:122::/48": "2001:db8:122:c000:2:2100::",
        "2001:db8:122:300::/56": "2001:db8:122:3c0:0:221::",
        "2001:db8:122:344::/64": "2001:db8:122:344:c0:2:2100:0",
        "2001:db8:122:344::/96": "2001:db8:122:344::192.0.2.33",
    }
    for prefix, expected in cases.items():
        p = Nat64Prefix.parse(prefix)
        assert p.embed("192.0.2.33") == IPv6Address(expected)
        assert p.extract(expected) == IPv4Address("192.0.2.33")


@given(st.sampled_from([32, 40, 48, 56, 64, 96]), st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_nat64_network_match_is_exact(length: int, base: int, v4len: int, probe: int) -> None:
    p = Nat64Prefix(IPv6Network(("2001:db8::", length)))
    net = IPv4Network((base & ((2**32 - 1) << (32 - v4len)) & (2**32 - 1), v4len))
    m = p.embed_network(net)
    assert m.matches(p.embed(IPv4Address(probe))) == (IPv4Address(probe) in net)


def test_nat64_bad_prefixes() -> None:
    with pytest.raises(ValidationError, match="/32, /40, /48, /56, /64 or /96"):
        Nat64Prefix.parse("fd64:ff9b::/80")
    with pytest.raises(ValidationError, match="host bits set"):
        Nat64Prefix.parse("2001:db8:0:0:ff00::/64")
