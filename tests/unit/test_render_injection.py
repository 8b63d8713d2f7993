"""No text can add a line to a rendered ruleset or config, even in objects that skipped validation.

Hypothesis puts arbitrary text (newlines, quotes, spaces, ``%scope`` suffixes, 10,000 characters, and
ready-made injections such as ``x\\n-A INPUT -j ACCEPT``) into each text field of a compiled Rule, a Zone, a
Tayga config or a CoreDNS config, and hands it to the renderers. Each renderer must either refuse it
(ValidationError) or accept only a value of the field's exact form, and then write exactly as many lines
as with the original value, every one of the renderer's own shape.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.render import export, ip6tables, nftables, ovn_match, tayga
from zonectl.render.coredns import DnsConfig, render_corefile
from zonectl.render.ir import render_ir

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
CONFIG = parse_config(yaml.safe_load((EX / "config.yaml").read_text()))
REGISTRY = ZoneRegistry.from_objects(CONFIG.layout, [d for d in yaml.safe_load_all((EX / "zones.yaml").read_text()) if d])
RULES = compile_objects([d for d in yaml.safe_load_all((EX / "policies.yaml").read_text()) if d], REGISTRY, CONFIG.nat64)
GATEWAY = list(RULES.for_gateway())
ZONES = tuple(ip6tables.ZoneMatch(z.name, REGISTRY.layout.zone_match(z.id)) for z in REGISTRY)
NAT64 = CONFIG.nat64.match()

INJECTIONS = ["x\n-A INPUT -j ACCEPT", "x\r\nCOMMIT", 'a" accept comment "b', "a b", "a;b", "a}b", "dmz\n", "web ",
              "fd00::%eth0", "r0123456789abcde\n", "ns/p\nmap 1.2.3.4 ::1", "tcp || 1", "#", "", "x" * 10_000, "ü",
              "-j ACCEPT", "$(reboot)", "a\tb", "a\x00b"]
TEXT = st.text(max_size=40) | st.sampled_from(INJECTIONS)
# The exact form each field may take (written independently of the renderers).
FORMS = {
    "id": re.compile(r"r[0-9a-f]{15}"),
    "policy": re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"),
    "zone": re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"),
    "name": re.compile(r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?"),
    "direction": re.compile(r"ingress|egress"),
    "action": re.compile(r"allow|deny"),
    "protocol": re.compile(r"tcp|udp|sctp|icmpv6"),
}
IP6T_LINE = re.compile(r"# .*|\*(filter|mangle)|:ZONECTL-[A-Za-z0-9-]+ - \[0:0\]|-X ZONECTL-[A-Za-z0-9-]+|COMMIT"
                       r"|-A ZONECTL-[A-Za-z0-9-]+ [^\n]*|-I (FORWARD|PREROUTING) 1 [^\n]*")
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ip6t_shape(text: str) -> None:
    for line in text.splitlines():
        assert IP6T_LINE.fullmatch(line), line
        if not line.startswith("#"):
            words = shlex.split(line)  # balanced quotes
            assert words.count("-j") <= 1 and words.count("-A") + words.count("-I") <= 1, line


def nft_shape(text: str) -> None:
    depth = 0
    for line in text.splitlines():
        assert line.count('"') % 2 == 0 and ";" not in line.replace("policy accept;", "").replace("priority filter;", "") \
            .replace("priority mangle;", "").replace("priority srcnat;", "").replace("srcnat; policy", ""), line
        depth += line.count("{") - line.count("}")
        assert depth >= 0, line
    assert depth == 0


def renders(rules: list) -> dict[str, str]:
    """Every renderer a compiled rule reaches, as text."""
    return {
        "ip6tables": ip6tables.render_restore(rules, NAT64, ZONES),
        "nftables": nftables.render_filter(rules, NAT64, ZONES),
        "ir": render_ir(rules),
        "ovn": json.dumps(ovn_match.render_ruleset(rules, ovn_match.AclSettings()), indent=1, sort_keys=True),
    }


BASELINE = renders(GATEWAY)


@PROPERTY
@given(field=st.sampled_from(sorted(FORMS)), index=st.integers(0, len(GATEWAY) - 1), text=TEXT)
def test_no_rule_field_adds_a_line(field: str, index: int, text: str) -> None:
    rules = list(GATEWAY)
    rules[index] = replace(rules[index], **{field: text})
    try:
        out = renders(rules)
    except ValidationError:
        return
    assert FORMS[field].fullmatch(text), f"{field}={text!r} was accepted"
    ip6t_shape(out["ip6tables"])
    nft_shape(out["nftables"])
    assert len(json.loads(out["ir"])) == len(rules)
    if field != "zone":  # a new valid zone name is a new zone chain: more lines, each of the right shape
        assert {k: len(v.splitlines()) for k, v in out.items()} == {k: len(v.splitlines()) for k, v in BASELINE.items()}


@PROPERTY
@given(field=st.sampled_from(["port_min", "port_max", "icmp_type", "order", "generation", "src", "dst", "nat64"]),
       value=st.none() | st.booleans() | st.integers() | st.floats() | TEXT)
def test_no_other_rule_value_reaches_a_line_unchecked(field: str, value) -> None:
    rule = next(r for r in GATEWAY if r.protocol == "tcp" and r.port_min == 443)
    try:
        out = renders([replace(rule, **{field: value})])
    except ValidationError:
        return
    assert value is None or isinstance(value, (bool, int)), f"{field}={value!r} was accepted"
    ip6t_shape(out["ip6tables"])
    nft_shape(out["nftables"])


@PROPERTY
@given(name=TEXT, description=TEXT, node=TEXT)
def test_no_zone_text_adds_a_line_to_an_export(name: str, description: str, node: str) -> None:
    base = export.build(REGISTRY, nodes=["fd00:10:244:1::/64"])
    expected = {fmt: len(export.render(fmt, base).splitlines()) for fmt in export.FORMATS}
    zones = tuple(replace(z, name=name, description=description) if z.name == "web" else z for z in REGISTRY.zones)
    try:
        data = export.build(ZoneRegistry(CONFIG.layout, zones), nodes=[node])
        out = {fmt: export.render(fmt, data) for fmt in export.FORMATS}
    except (ValidationError, ValueError):  # ValueError: IPv6Network refusing the node text
        return
    assert FORMS["zone"].fullmatch(name) and "%" not in node
    assert {fmt: len(text.splitlines()) for fmt, text in out.items()} == expected


def test_a_scoped_node_address_is_refused() -> None:
    """ipaddress accepts ``fd00::%scope/64`` and prints the scope back: the export must not write it."""
    node = IPv6Network("fd00:10:244:1::%x\n-A INPUT -j ACCEPT/64")
    with pytest.raises(ValidationError, match="%scope"):
        export.build(REGISTRY, nodes=[node])


BASE_TAYGA = tayga.TaygaConfig("zt64", IPv4Address("100.64.0.1"), IPv6Network("fd64:ff9b::/96"),
                               dynamic_pool=IPv4Network("100.64.0.0/24"), data_dir="/var/lib/zonectl/tayga/shared",
                               comment="zonectl gateway instance shared")
TAYGA_LINES = len(tayga.render(BASE_TAYGA).splitlines())


@PROPERTY
@given(field=st.sampled_from(["tun_device", "data_dir", "comment", "ipv4_addr", "prefix", "udp_cksum_mode"]), text=TEXT)
def test_no_tayga_value_adds_a_directive(field: str, text: str) -> None:
    try:
        out = tayga.render(replace(BASE_TAYGA, **{field: text}), tayga.TaygaVersion(0, 9, 6))
    except ValidationError:
        return
    assert field in ("tun_device", "data_dir", "comment", "udp_cksum_mode") and "\n" not in text and "#" not in text
    lines = out.splitlines()
    assert len(lines) == TAYGA_LINES + (field == "udp_cksum_mode") - (field == "comment" and text == "")
    assert all(line.startswith("#") or line.split()[0] in tayga.TaygaVersion(0, 9, 6).directives for line in lines)


BASE_DNS = DnsConfig(upstreams=("/etc/resolv.conf", "192.0.2.53"), native_zones=("corp.example",))
COREFILE_LINES = len(render_corefile(CONFIG.nat64, BASE_DNS).splitlines())


@PROPERTY
@given(field=st.sampled_from(["cluster_domain", "upstreams", "native_zones", "namespace", "configmap"]), text=TEXT)
def test_no_dns_value_adds_a_corefile_line(field: str, text: str) -> None:
    value = (text,) if field in ("upstreams", "native_zones") else text
    try:
        out = render_corefile(CONFIG.nat64, replace(BASE_DNS, **{field: value}))
    except ValidationError:
        return
    assert re.fullmatch(r"[A-Za-z0-9.:/\[\]-]+", text), f"{field}={text!r} was accepted"
    assert len(out.splitlines()) == COREFILE_LINES
