"""Firewall export: golden files per format, real nft/ip6tables loading in a throwaway network namespace,
the Check Point mask inversion, and CIDR expansion equal to the wildcard mask on the given nodes.

Regenerate the golden files after a deliberate change with ZONECTL_UPDATE_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.layout import ALL_ONES, AddrMatch, Layout
from zonectl.core.zones import Zone, ZoneRegistry
from zonectl.inputs import load_documents, node_cidrs, of_kind
from zonectl.harness.netns import Netns
from zonectl.render import export
from zonectl.render.export.checkpoint import wildcard_mask
from zonectl.render.export.names import object_name
from zonectl.render.export.tabular import CSV_COLUMNS, to_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).with_name("golden") / "export"
EXT = {"json": "json", "csv": "csv", "nftables": "nft", "ip6tables": "rules", "checkpoint": "sh",
       "panos": "txt", "fortigate": "conf", "asa": "txt"}

CONFIG = parse_config(yaml.safe_load((EXAMPLES / "config.yaml").read_text()))
REGISTRY = ZoneRegistry.from_objects(CONFIG.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))
NODES = node_cidrs([EXAMPLES / "nodes.yaml"], CONFIG.layout)


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ZONECTL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with ZONECTL_UPDATE_GOLDEN=1, review it, commit it"
    assert text == path.read_text(), f"{name} differs from {path} (ZONECTL_UPDATE_GOLDEN=1 to accept after review)"


# --- golden files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_golden_with_nodes(fmt: str) -> None:
    data = export.build(REGISTRY, nodes=NODES)
    assert_golden(f"examples-nodes.{EXT[fmt]}" if fmt in ("json", "csv") else f"{fmt}.{EXT[fmt]}", export.render(fmt, data))


@pytest.mark.parametrize("fmt", ["json", "nftables", "checkpoint"])
def test_golden_without_nodes_cluster_scope(fmt: str) -> None:
    data = export.build(REGISTRY, scopes=["cluster"])
    assert_golden(f"cluster-only-{fmt}.{EXT[fmt]}", export.render(fmt, data))


def test_json_has_the_readme_masks() -> None:
    doc = json.loads(export.render("json", export.build(REGISTRY)))
    dmz = next(z for z in doc["zones"] if z["zone"] == "dmz")
    assert dmz["idHex"] == "0x2000"
    assert {m["scope"]: m["match"] for m in dmz["matches"]} == {
        "cluster": "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::",
        "datacenter": "fd00:10:200:0:2000::/ffff:ffff:ff00:0:ffff::",
    }
    assert "nodes" not in dmz and doc["nodes"] is None


def test_every_exported_value_is_normalised() -> None:
    """value AND mask == value in every row of the CSV (nftables would silently never match otherwise)."""
    rows = export.render("csv", export.build(REGISTRY, nodes=NODES)).splitlines()[1:]
    assert len(rows) == 3 * (2 + 3)
    for row in rows:
        _, _, _, _, value, mask, match, _, _ = row.split(",")
        assert int(IPv6Address(value)) & int(IPv6Address(mask)) == int(IPv6Address(value))
        assert match == f"{value}/{mask}"


# --- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", sorted(export.CIDR_FORMATS))
def test_cidr_formats_need_nodes(fmt: str) -> None:
    with pytest.raises(ValidationError, match=r"no IPv6 wildcard masks: give the node podCIDRs \(--nodes"):
        export.render(fmt, export.build(REGISTRY))


def test_datacenter_scope_needs_a_datacenter_prefix() -> None:
    layout = Layout(IPv6Network("fd00:10:244::/48"))
    with pytest.raises(ValidationError, match="scope datacenter needs a datacenter prefix"):
        export.build(ZoneRegistry(layout, (Zone("dmz", 0x2000),)), scopes=["datacenter"])
    assert export.build(ZoneRegistry(layout, (Zone("dmz", 0x2000),))).scopes == ("cluster",)


@pytest.mark.parametrize("node,reason", [("fd00:10:245:1::/64", "not inside the cluster prefix"),
                                         ("fd00:10:244:1::/80", "is not a /64")])
def test_bad_node_is_refused(node: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        export.build(REGISTRY, nodes=[node])


def test_names_fit_vendor_limits() -> None:
    long_zone = "z" * 63
    name = object_name(long_zone, "fd00-10-244-2-2000--_80", limit=63)
    assert len(name) == 63 and name.startswith("zonectl-zzz")
    assert name != object_name(long_zone, "fd00-10-244-3-2000--_80", limit=63)
    data = export.build(ZoneRegistry(CONFIG.layout, (Zone(long_zone, 7),)), nodes=NODES)
    for fmt, limit in (("panos", 63), ("fortigate", 79), ("asa", 64)):
        text = export.render(fmt, data)
        names = set(re.findall(r"zonectl-[\w-]+", text))
        assert names and all(len(n) <= limit for n in names), (fmt, names)


# --- Check Point: the inverted wildcard mask ------------------------------------------------------------
def _checkpoint_objects(text: str) -> dict[str, tuple[int, int]]:
    found = re.findall(r'add wildcard name "([^"]+)" ipv6-address "([^"]+)" ipv6-mask-wildcard "([^"]+)"', text)
    return {name: (int(IPv6Address(a)), int(IPv6Address(w))) for name, a, w in found}


def test_checkpoint_mask_is_inverted() -> None:
    objects = _checkpoint_objects(export.render("checkpoint", export.build(REGISTRY)))
    assert len(objects) == 6
    value, wild = objects["zonectl-dmz-cluster"]
    assert str(IPv6Address(wild)) == "::ffff:0:ffff:ffff:ffff"
    assert wildcard_mask(REGISTRY.match("dmz", "cluster")) == "0:0:0:ffff:0:ffff:ffff:ffff"
    assert value & wild == 0, "a Check Point address must be 0 where its wildcard allows anything"


CHECKPOINT = _checkpoint_objects(export.render("checkpoint", export.build(REGISTRY)))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, ALL_ONES), st.sampled_from(["dmz", "web", "db"]), st.sampled_from(["cluster", "datacenter"]),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_checkpoint_semantics_match_the_zone(noise: int, zone: str, scope: str, node: int, offset: int) -> None:
    """Check Point matches where (addr AND NOT wildcard) == address: exactly the zone's pods."""
    value, wild = CHECKPOINT[f"zonectl-{zone}-{scope}"]
    zid = REGISTRY.require(zone).id
    for addr in (noise, int(CONFIG.layout.encode(f"fd00:10:244:{node:x}::/64", zid, offset)), noise ^ (1 << 60)):
        checkpoint_says = addr & ~wild & ALL_ONES == value
        assert checkpoint_says == REGISTRY.match(zone, scope).matches(addr)


# --- expansion equals the mask restricted to the nodes --------------------------------------------------
@st.composite
def layout_nodes_addr(draw) -> tuple[Layout, int, list[IPv6Network], int]:
    """A random valid layout (the zone field may sit below the node prefix with a gap), nodes, an address."""
    cluster_len = draw(st.integers(16, 56))
    node_len = draw(st.integers(cluster_len + 1, 64))
    gap = draw(st.integers(0, 3))
    width = draw(st.integers(1, 16))
    layout = Layout(IPv6Network((draw(st.integers(0, ALL_ONES)) >> (128 - cluster_len) << (128 - cluster_len), cluster_len)),
                    node_prefix_len=node_len, zone_offset=node_len + gap, zone_width=width, ipam_bits=16)
    zone_id = draw(st.integers(1, layout.max_zone_id))
    base = int(layout.cluster.network_address)
    indexes = draw(st.lists(st.integers(0, (1 << (node_len - cluster_len)) - 1), min_size=1, max_size=5, unique=True))
    nodes = [IPv6Network((base | (i << (128 - node_len)), node_len)) for i in indexes]
    # Addresses near the interesting ones: a listed or random node, this zone or a neighbour, noise below.
    node = draw(st.sampled_from(nodes)) if draw(st.booleans()) else IPv6Network(
        (base | (draw(st.integers(0, (1 << (node_len - cluster_len)) - 1)) << (128 - node_len)), node_len))
    zid = zone_id if draw(st.booleans()) else draw(st.integers(0, layout.max_zone_id))
    low = draw(st.integers(0, (1 << layout.field_shift) - 1))
    gap_bits = draw(st.integers(0, (1 << gap) - 1)) << (128 - layout.zone_offset) if gap else 0
    addr = int(node.network_address) | gap_bits | (zid << layout.field_shift) | low
    if draw(st.integers(0, 9)) == 0:
        addr = draw(st.integers(0, ALL_ONES))
    return layout, zone_id, nodes, addr


@settings(max_examples=300, deadline=None)
@given(layout_nodes_addr())
def test_expanded_cidrs_equal_mask_on_nodes(case) -> None:
    layout, zone_id, nodes, addr = case
    data = export.build(ZoneRegistry(layout, (Zone("z", zone_id),)), scopes=["cluster"], nodes=nodes)
    (zone,) = data.zones
    in_cidrs = any(IPv6Address(addr) in IPv6Network(c) for c in data.cidrs(zone))
    on_nodes = any(IPv6Address(addr) in n for n in nodes)
    assert in_cidrs == (zone.matches[0].match.matches(addr) and on_nodes)
    # and per node: the node's own value/mask says the same as that node's CIDRs
    for n in data.on_nodes(zone):
        assert AddrMatch.parse(n.match).matches(addr) == any(IPv6Address(addr) in IPv6Network(c) for c in n.cidrs)


@settings(max_examples=200, deadline=None)
@given(layout_nodes_addr(), st.sampled_from(["", "Front ends", 'a "quoted", comma']), st.booleans())
def test_json_and_csv_are_what_the_standard_library_writes(case, description: str, with_nodes: bool) -> None:
    """The line-by-line JSON and CSV writers write exactly what ``json.dumps(indent=2)`` and ``csv.writer``
    write, for any layout, node list and zone (they skip the libraries' per-value cost, not their output)."""
    layout, zone_id, nodes, _ = case
    other = () if layout.max_zone_id == 1 else (Zone("other-zone", 1 if zone_id != 1 else 2),)
    zones = (Zone("z", zone_id, description=description), *other)
    data = export.build(ZoneRegistry(layout, zones), scopes=["cluster"], nodes=nodes if with_nodes else None)
    assert export.render("json", data) == json.dumps(to_dict(data), indent=2) + "\n"
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for z in data.zones:
        head = [z.zone.name, z.zone.id, z.zone.hex_id]
        for m in z.matches:
            writer.writerow(head + [m.scope, m.match.address, m.match.netmask, m.match.text, "", ""])
        for n in data.on_nodes(z):
            match = AddrMatch.parse(n.match)
            writer.writerows(head + ["node", match.address, match.netmask, match.text, IPv6Network(n.node), c]
                             for c in n.cidrs)
    assert export.render("csv", data) == rows.getvalue()


def test_no_zone_json() -> None:
    data = export.build(ZoneRegistry(CONFIG.layout, ()), scopes=["cluster"], nodes=NODES)
    assert export.render("json", data) == json.dumps(to_dict(data), indent=2) + "\n"


# --- real nftables / ip6tables ---------------------------------------------------------------------------
def _need(*binaries: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("loading rulesets needs root (a network namespace)")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install nftables iptables)")


@pytest.fixture
def netns() -> Iterator[Netns]:
    _need("ip")
    with Netns.create("zxexp") as ns:
        yield ns


def _load(ns: Netns, cmd: list[str], text: str, tmp_path: Path) -> None:
    path = tmp_path / "ruleset"
    path.write_text(text)
    ns.run(cmd + [str(path)])


def test_nftables_snippet_loads(netns: Netns, tmp_path: Path) -> None:
    _need("nft")
    text = export.render("nftables", export.build(REGISTRY, nodes=NODES))
    _load(netns, ["nft", "-c", "-f"], text, tmp_path)
    # Loaded for real (twice: the snippet replaces its own table), then used from a table of the user's.
    _load(netns, ["nft", "-f"], text, tmp_path)
    _load(netns, ["nft", "-f"], text, tmp_path)
    user = text + (
        "table ip6 mine {\n  chain user_forward {\n    type filter hook forward priority 0; policy accept;\n"
        "    ip6 saddr & $zonectl_mask_cluster == $zonectl_dmz_cluster ip6 daddr & $zonectl_mask_datacenter "
        "== $zonectl_web_datacenter tcp dport 8080 accept\n  }\n}\n"
    )
    _load(netns, ["nft", "-f"], user, tmp_path)
    listing = netns.run(["nft", "list", "ruleset"]).stdout
    assert "ip6 saddr & ffff:ffff:ffff:0:ffff:: == fd00:10:244:0:2000::" in listing
    assert "ip6 daddr & ffff:ffff:ff00:0:ffff:: == fd00:10:200:0:2100::" in listing
    assert "fd00:10:244:3:3000::/80" in listing
    assert listing.count("table ip6 zonectl_zones") == 1


def test_nftables_snippet_without_nodes_loads(netns: Netns, tmp_path: Path) -> None:
    _need("nft")
    _load(netns, ["nft", "-c", "-f"], export.render("nftables", export.build(REGISTRY, scopes=["cluster"])), tmp_path)


def test_ip6tables_snippet_loads(netns: Netns, tmp_path: Path) -> None:
    _need("ip6tables-restore", "ip6tables")
    text = export.render("ip6tables", export.build(REGISTRY, nodes=NODES))
    path = tmp_path / "rules"
    path.write_text(text)
    netns.run(["sh", "-c", f"ip6tables-restore --test < {path}"])
    netns.run(["ip6tables", "-N", "MINE"])  # a chain of the user's survives --noflush
    netns.run(["ip6tables", "-A", "MINE", "-j", "ACCEPT"])
    for _ in range(2):
        netns.run(["sh", "-c", f"ip6tables-restore --noflush < {path}"])
    rules = netns.run(["ip6tables", "-S"]).stdout
    assert "-A ZONECTL-ZONE-SRC -s fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in rules
    assert "-A ZONECTL-ZONE-DST -d fd00:10:200:0:3000::/ffff:ffff:ff00:0:ffff::" in rules
    assert rules.count("-A ZONECTL-ZONE-SRC ") == 3 * (2 + 3)  # not doubled by the second load
    assert "-A MINE -j ACCEPT" in rules
