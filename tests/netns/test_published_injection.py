"""Injections through the published rules document, into a real ``zonectl gateway apply`` in a namespace.

The gateway applies the example policies' document once in a network namespace of this module's own
(``netfilter_world``); then documents with one field changed are handed to the same command. Every
field in turn gets a newline followed by an ip6tables rule (``-A INPUT -s ::/0 -j ACCEPT``) and an nft
one, with either filter backend (``gateway.filter``: nftables, the default, and ip6tables), and
Hypothesis puts any JSON value into any field (tests/unit/test_published_schema.py has the pure
property). A refused document must end with exit status 2 and one line, and leave ip6tables, iptables
and the nftables ruleset byte-identical (``zonectl.harness.netns.netfilter_state``, without counters);
an accepted one (a different valid document) is applied, and re-applying the original puts back the
very same rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zonectl import cli
from zonectl.core import published
from zonectl.core.errors import ValidationError

from published_docs import BASE, CONFIG, FIELDS, VALUES, edited

INJECTION = "x\n-A INPUT -s ::/0 -j ACCEPT\nadd rule ip6 zonectl forward accept"
MARK = {"nftables": "table ip6 zonectl {", "ip6tables": "ZONECTL-FWD"}  # the base filter is in place


class Gateway:
    """``zonectl gateway apply --netns`` with a config of its own, fed one document after another."""

    def __init__(self, world: Any, work: Path, backend: str) -> None:
        self.world = world
        self.work = work
        self.config = work / "config.yaml"
        self.config.write_text(yaml.safe_dump({
            "apiVersion": "zonectl.io/v1alpha1", "kind": "ZonectlConfig",
            "layout": CONFIG.layout.as_dict() | {"zoneField": {"offset": 64, "width": 16}},
            "nat64": {"prefix": str(CONFIG.nat64.network)},
            "gateway": {"uplink": world.uplink, "stateDir": str(work / "state"), "filter": backend},
        }))

    def apply(self, doc: Any, capsys) -> tuple[int, str]:
        path = self.work / "gateway.json"
        path.write_text(json.dumps(doc))
        code = cli.main(["gateway", "apply", "--config", str(self.config), "--inputs", str(path),
                         "--netns", self.world.ns])
        return code, capsys.readouterr().err


@pytest.fixture(scope="module", params=sorted(MARK))
def gateway(request, netfilter_world, tmp_path_factory) -> Iterator[tuple[Gateway, str]]:
    gw = Gateway(netfilter_world, tmp_path_factory.mktemp("published-injection"), request.param)
    code = cli.main(["gateway", "apply", "--config", str(gw.config), "--inputs",
                     str(_write(gw.work / "base.json", BASE)), "--netns", netfilter_world.ns])
    assert code == 0
    state = netfilter_world.state()
    assert MARK[request.param] in state and "zonectl-nat" in state
    assert all(mark not in state for mark in MARK.values() if mark != MARK[request.param])
    yield gw, state


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _refused_in_the_pure_reader(doc: Any) -> bool:
    try:
        published.parse_text(json.dumps(doc).encode(), CONFIG.layout)
    except ValidationError:
        return True
    return False


@pytest.mark.parametrize("path", FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_an_injected_line_in_any_field_changes_no_rule(gateway, capsys, path: tuple) -> None:
    gw, state = gateway
    code, err = gw.apply(edited(path, INJECTION), capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert gw.world.state() == state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FIELDS), VALUES)
def test_any_value_in_any_field_is_refused_unchanged_or_applied_as_a_valid_document(gateway, capsys, path, value):
    gw, state = gateway
    doc = edited(path, value)
    code, err = gw.apply(doc, capsys)
    if _refused_in_the_pure_reader(doc):
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert gw.world.state() == state
        return
    assert code in (0, 2) and "Traceback" not in err, err  # a valid document may still fail the host checks
    assert gw.apply(BASE, capsys)[0] == 0
    assert gw.world.state() == state
