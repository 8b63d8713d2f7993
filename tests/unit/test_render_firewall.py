"""ip6tables / nftables / CoreDNS renderers: golden files from the example zones and policies."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from golden_gw import assert_golden
from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.layout import AddrMatch
from zonectl.core.nat64 import Nat64Prefix
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import load_documents
from zonectl.render import coredns, ip6tables, nftables

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def example():
    cfg = parse_config(yaml.safe_load((EXAMPLES / "config.yaml").read_text()))
    reg = ZoneRegistry.from_objects(cfg.layout, load_documents([EXAMPLES / "zones.yaml"]))
    rules = compile_objects(load_documents([EXAMPLES / "policies.yaml"]), reg, cfg.nat64)
    zones = [ip6tables.ZoneMatch(z.name, reg.match(z.name)) for z in reg]
    marks = [ip6tables.ZoneMark("web", reg.match("web"), 0x10000, 0xFF0000)]
    return cfg, rules.for_gateway(), zones, marks


def test_ip6tables_golden(example) -> None:
    cfg, rules, zones, marks = example
    text = ip6tables.render_restore(rules, cfg.nat64.match(), zones, marks)
    assert_golden("ip6tables-examples.rules", text)
    # the wildcard mask of the issue, verbatim
    assert "-s fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in text
    # fail closed: the last rule of the egress chain drops everything no rule allowed
    fwd = [l for l in text.splitlines() if l.startswith("-A ZONECTL-FWD")]
    assert fwd[-1] == '-A ZONECTL-FWD -m comment --comment "zonectl zone=- action=deny fail-closed" -j DROP'
    # each zone's rules sit in the zone's own chain, once each, in compiled order
    for zone in {r.zone for r in rules}:
        chain = [l for l in text.splitlines() if l.startswith(f"-A ZONECTL-Z-{zone} ")]
        assert [l.split("rule=")[1].split()[0] for l in chain if "rule=" in l] == [r.id for r in rules if r.zone == zone]
        assert chain[-1].endswith(f'--comment "zonectl zone={zone} action=deny closed" -j DROP')
        dispatch = [l for l in fwd if f"-j ZONECTL-Z-{zone}" in l]
        assert len(dispatch) == 1 and "-s fd00:10:244:0:" in dispatch[0]


def test_ip6tables_jumps_only_when_asked(example) -> None:
    cfg, rules, zones, _ = example
    text = ip6tables.render_restore(rules, cfg.nat64.match(), zones, jumps=())
    assert "-I FORWARD" not in text and "-I PREROUTING" not in text
    assert ":ZONECTL-FWD - [0:0]" in text and ":ZONECTL-MARK - [0:0]" in text  # declared = flushed, ours only


def test_ip6tables_counters_parse() -> None:
    save = "\n".join([
        "*filter",
        '[10:840] -A ZONECTL-FWD -s fd00::/64 -m comment --comment "zonectl rule=r1 zone=dmz action=allow policy=a/b" -j ACCEPT',
        '[3:180] -A ZONECTL-FWD -m comment --comment "zonectl zone=- action=deny fail-closed" -j DROP',
        '[99:1] -A OTHER -m comment --comment "zonectl zone=x action=allow" -j ACCEPT',
        "[5:5] -A ZONECTL-FWD -j ACCEPT",
        '[7:7] -A ZONECTL-FWD -s fd00::/64 -m comment --comment "zonectl dispatch=dmz" -j ZONECTL-Z-dmz',
        '[4:400] -A ZONECTL-Z-dmz -m comment --comment "zonectl zone=dmz action=deny closed" -j DROP',
    ])
    c = ip6tables.parse_counters(save)
    assert [(x.field("zone"), x.field("action"), x.packets, x.bytes) for x in c] == [
        ("dmz", "allow", 10, 840), ("-", "deny", 3, 180), ("dmz", "deny", 4, 400)]


def test_per_rule_commands_match_restore(example) -> None:
    cfg, rules, zones, _ = example
    cmds = ip6tables.render_per_rule_commands(rules, zones)
    chains = [c[1] for c in cmds if c[0] == "-N"]
    assert chains[0] == "ZONECTL-FWD" and len(chains) == 1 + len({r.zone for r in rules})
    appends = [c for c in cmds if c[0] == "-A"]
    # every rule, one closing drop per zone, one dispatch per zone with rules, the fail-closed drop
    assert len(appends) == len(rules) + len(zones) + (len(chains) - 1) + 1
    assert all("--comment" in c for c in appends)


def test_long_zone_names_get_short_chain_names() -> None:
    name = ip6tables.zone_chain("a-very-long-zone-name-that-iptables-would-refuse")
    assert len(name) <= 28 and name.startswith("ZONECTL-Z-a-very-long")
    assert ip6tables.zone_chain("dmz") == "ZONECTL-Z-dmz"


def test_stale_zone_chains_are_emptied_and_deleted(example) -> None:
    cfg, rules, zones, _ = example
    text = ip6tables.render_restore(rules, cfg.nat64.match(), zones, stale_chains=["ZONECTL-Z-gone", "ZONECTL-Z-dmz"])
    assert ":ZONECTL-Z-gone - [0:0]" in text and "-X ZONECTL-Z-gone" in text
    assert "-X ZONECTL-Z-dmz" not in text  # still wanted: never deleted


def test_nftables_golden(example) -> None:
    cfg, rules, zones, marks = example
    assert_golden("nftables-filter-examples.nft", nftables.render_filter(rules, cfg.nat64.match(), zones, marks))
    nat = nftables.render_nat([nftables.NatPool("shared", IPv4Network("100.64.0.0/24")),
                               nftables.NatPool("web", IPv4Network("100.64.21.0/24"), IPv4Address("198.51.100.21"))],
                              "eth1")
    assert_golden("nftables-nat.nft", nat)
    assert nat.index("snat to 198.51.100.21") < nat.index("masquerade")


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_nft_values_are_always_inside_their_mask(value: int, mask: int) -> None:
    text = nftables.addr_expr("saddr", AddrMatch(value, mask))
    if "&" in text:  # ip6 saddr & MASK == VALUE
        shown_mask = int(IPv6Address(text.split("& ")[1].split(" ==")[0]))
        shown_value = int(IPv6Address(text.split("== ")[1]))
        assert shown_value & ~shown_mask == 0  # a bit outside the mask and nftables would never match
        assert shown_mask == mask and shown_value == value & mask
    else:  # ip6 saddr VALUE/LEN
        net = IPv6Network(text.split()[-1])
        assert int(net.netmask) == mask and int(net.network_address) == value & mask


def test_nft_prefix_vs_wildcard() -> None:
    assert nftables.addr_expr("daddr", AddrMatch.parse("fd64:ff9b::/96")) == "ip6 daddr fd64:ff9b::/96"
    wild = AddrMatch.parse("fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::")
    assert nftables.addr_expr("saddr", wild) == "ip6 saddr & ffff:ffff:ffff:0:ffff:: == fd00:10:244:0:2000::"


def test_coredns_golden() -> None:
    nat64 = Nat64Prefix.parse("fd64:ff9b::/96")
    cfg = coredns.parse_dns({"upstreams": ["fd64:ff9b::808:808"], "nativeZones": ["corp.example.com"]})
    text = coredns.render_configmap(nat64, cfg)
    assert_golden("coredns-configmap.yaml", text)
    corefile = yaml.safe_load(text)["data"]["Corefile"]
    cluster, native, root = corefile.split("\n}\n")[:3]
    assert "dns64" not in cluster and "dns64" not in native
    assert "prefix fd64:ff9b::/96" in root and "translate_all" in root


def test_coredns_config_errors() -> None:
    with pytest.raises(ValidationError) as exc:
        coredns.parse_dns({"clusterDomain": "bad domain", "upstreams": [], "cacheSeconds": -1, "typo": 1})
    msg = str(exc.value)
    for path in ("dns.clusterDomain", "dns.upstreams", "dns.cacheSeconds", "unknown field(s) typo"):
        assert path in msg
