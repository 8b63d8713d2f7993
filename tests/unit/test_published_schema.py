"""The published rules document is read against a strict schema: no field, set to anything, adds a line.

The gateway and the node agents trust nothing in the document they are handed (a ConfigMap anyone with
write access to it can edit). Hypothesis sets one field of a valid document (any field, at any depth,
the whole document's structure included) to any JSON value: text with newlines, quotes and ready-made
ip6tables/nft/Tayga injections, numbers of every kind, booleans, null, lists and objects, or removes it,
or adds an unknown key. The document must then either be refused with a ValidationError, or give the
gateway exactly the lines the valid document gives, token for token, except for tokens of a plain
form (a name, a number, an address): nothing foreign, no added line, no quote or space smuggled in.
The same edits through a real ``zonectl gateway apply`` in a network namespace are in
tests/netns/test_published_injection.py.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zonectl.core import published
from zonectl.core.errors import ValidationError
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.plan import build_plan
from zonectl.render.tayga import TaygaVersion

from docedits import DELETE, at
from published_docs import BASE, CONFIG, FIELDS, PATHS, STRUCTURE, VALUES, edited
from test_render_injection import ip6t_shape, nft_shape

GATEWAY = parse_gateway({"uplink": "eth1", "stateDir": "/var/lib/zonectl-schema-test", "tayga": {"version": "0.9.2"}})
VERSION = TaygaVersion.parse("0.9.2")
SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:/,-]+")  # what an accepted change may alter: a name, number or address


def rendered(doc: Any) -> dict[str, list[str]]:
    """What the gateway writes from a document: ip6tables-restore input, nft filter and NAT, Tayga configs."""
    parsed = published.parse_text(json.dumps(doc).encode(), CONFIG.layout)
    plan = build_plan(GATEWAY, CONFIG.nat64, parsed.registry, parsed.gateway, VERSION)
    return {"ip6tables": plan.ip6tables_text().splitlines(), "nft": plan.nft_filter_text().splitlines(),
            "nat": plan.nat_text.splitlines(), "tayga": [line for i in plan.instances for line in i.conf_text.splitlines()]}


BASE_TEXT = rendered(BASE)


def tokens(kind: str, line: str) -> list[str]:
    return shlex.split(line, comments=False) if kind == "ip6tables" else line.split()


def check_same_shape(doc: Any, value: Any) -> None:
    """Refused, or the same lines as the valid document with only plain tokens changed."""
    out = refused_or_well_formed(doc, value)
    if out is None:
        return
    for kind, lines in out.items():
        base = BASE_TEXT[kind]
        assert len(lines) == len(base), (kind, lines)
        for old, new in zip(base, lines, strict=True):
            if old == new:
                continue
            a, b = tokens(kind, old), tokens(kind, new)
            assert len(a) == len(b), (old, new)
            for x, y in zip(a, b, strict=True):
                assert x == y or SAFE_TOKEN.fullmatch(y) or kind == "ip6tables" and y.startswith("zonectl ") and \
                    re.fullmatch(r"[A-Za-z0-9 _.,:/()=-]+", y), (old, new)


def refused_or_well_formed(doc: Any, value: Any) -> dict[str, list[str]] | None:
    """None if the document is refused (in one line); else what it renders, checked to be of the renderers'
    own shape (tests/unit/test_render_injection.py) and free of the value if that is not a plain token."""
    try:
        out = rendered(doc)
    except ValidationError as exc:
        assert "\n" not in str(exc)
        return None
    ip6t_shape("\n".join(out["ip6tables"]))
    nft_shape("\n".join(out["nft"] + out["nat"]))
    if isinstance(value, str) and not SAFE_TOKEN.fullmatch(value) and value not in json.dumps(BASE_TEXT):
        assert value not in json.dumps(out), value
    return out


def test_the_base_document_renders() -> None:
    assert all(BASE_TEXT.values()) and len(FIELDS) > 300 and len(STRUCTURE) > 30


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), VALUES)
def test_any_value_in_any_field_is_refused_or_changes_no_line(path: tuple, value: Any) -> None:
    check_same_shape(edited(path, value), value)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(STRUCTURE), VALUES)
def test_any_value_in_place_of_an_object_or_list_is_refused_or_well_formed(path: tuple, value: Any) -> None:
    """A list or object replaced: a valid replacement may hold fewer rules or zones (the document is the
    controller's decision), but never a line of a foreign shape or the injected text."""
    refused_or_well_formed(edited(path, value), value)


@pytest.mark.parametrize("path", FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_every_field_with_an_injection_is_refused(path: tuple) -> None:
    """Each field in turn, set to a newline followed by a rule: refused, naming the field."""
    doc = edited(path, "x\n-A INPUT -s ::/0 -j ACCEPT")
    with pytest.raises(ValidationError) as err:
        published.parse_text(json.dumps(doc).encode(), CONFIG.layout)
    field = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
    message = str(err.value)
    assert "\n" not in message and (field in message or path[-1] in ("apiVersion", "kind")), message


KEYS = [p for p in PATHS if p and isinstance(p[-1], str)]  # keys of objects (a list may hold fewer rules)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), st.sampled_from([DELETE, "unknown-key"]))
def test_a_missing_or_unknown_key_is_refused(path: tuple, how: Any) -> None:
    if how is DELETE:
        doc = edited(path, DELETE)
        if path == ("ovn",) or path[-1:] == ("egress",):  # optional parts: without them the document means less
            refused_or_well_formed(doc, None)
            return None
    else:
        doc = edited(path[:-1], {**at(BASE, path[:-1]), "extra": 1}) if isinstance(at(BASE, path[:-1]), dict) else None
        if doc is None:
            return None
    with pytest.raises(ValidationError):
        published.parse_text(json.dumps(doc).encode(), CONFIG.layout)
    return None




@pytest.mark.parametrize("data, message", [
    (b'{"apiVersion": "zonectl.io/v1alpha1", "apiVersion": "x"}', "duplicate key 'apiVersion'"),
    (b"[NaN]", "NaN is not a number JSON allows"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": ' + b"9" * 5000 + b"}", "invalid value"),
    ("{}".encode("utf-16"), "is UTF-16 text"),
    (b"\x00{}", "binary"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"{", "line 1, column 2"),
])
def test_text_that_is_not_one_strict_json_document_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        published.parse_text(data, CONFIG.layout)
    assert "\n" not in str(err.value)


def test_a_document_over_the_size_limit_is_refused_unparsed() -> None:
    with pytest.raises(ValidationError, match="bytes .at most"):
        published.parse_text(b" " * (published.MAX_BYTES + 1), CONFIG.layout)


@pytest.mark.parametrize("field, value, reason", [
    ("id", "r000000000000000", "is not the hash of the rule's content"),
    ("src", "fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::", "local side (src) is not zone dmz's match"),
    ("zone", "nosuch", "zone 'nosuch' is not in the document's zones"),
    ("nat64", False, "rules holds the NAT64-bound egress rules"),
    ("isDefault", True, "isDefault does not fit"),
    ("portMax", 52, "portMin and portMax are not a port range"),
    ("dst", "fd64:ff9b::c000:200/120", "is not in the form the controller writes it"),
    ("dst", "FD64:FF9B::C000:200/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00", "is not in the form the controller writes it"),
    ("src", "fd00:10:244:0:2000::/ffff::/1", "is not an address match (value/mask)"),
    ("src", "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::1", "its local side (src) is not zone dmz's match"),
])
def test_a_rule_of_good_fields_that_zonectl_cannot_have_written_is_refused(field: str, value: Any, reason: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["rules"][0][field] = value
    with pytest.raises(ValidationError, match=re.escape(reason)):
        published.parse_text(json.dumps(doc).encode(), CONFIG.layout)


def test_a_rule_listed_twice_is_refused() -> None:
    doc = copy.deepcopy(BASE)
    doc["ovn"]["otherRules"].append(doc["ovn"]["otherRules"][0])
    with pytest.raises(ValidationError, match=r"ovn.otherRules\[11\]"):
        published.parse_text(json.dumps(doc).encode(), CONFIG.layout)
