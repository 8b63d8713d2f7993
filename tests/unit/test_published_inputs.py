"""The published rules document (gateway + OVN node agents): format, compatibility, the one loader, CLI rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zonectl.cli import main
from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.core import published
from zonectl.inputs import read_published

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def rules(example_zones, example_config, example_policy_bodies):
    return compile_objects(example_policy_bodies, example_zones, example_config.nat64)


def test_complete_document_round_trips_and_stays_compatible(rules, example_zones, example_config) -> None:
    layout = example_config.layout
    plain = published.document(rules, example_zones)
    full = published.document(reversed(rules.rules), example_zones, complete=True, keep=["ns/b", "ns/a", "ns/a"])
    assert "ovn" not in plain  # central mode: the document is exactly what it always was
    assert {k: v for k, v in full.items() if k != "ovn"} == plain  # gateways see the same document
    ids = {r["id"] for r in full["rules"]}
    assert not ids & {r["id"] for r in full["ovn"]["otherRules"]}  # no rule twice (ConfigMap size)
    parsed = published.parse_document(json.loads(published.render(full)), layout)
    assert parsed.complete is not None and parsed.complete.rules == rules.rules  # same rules, same order
    assert parsed.keep == ("ns/a", "ns/b")
    assert parsed.gateway.rules == rules.for_gateway() == published.load_document(full, layout)[1].rules
    assert published.parse_document(plain, layout).complete is None
    # a complete document with no policies at all is complete (and empty), not "no ovn part"
    empty = published.parse_document(published.document([], example_zones, complete=True), layout)
    assert empty.complete is not None and len(empty.complete) == 0


@pytest.mark.parametrize("ovn, message", [
    ([], "ovn: must be an object, not a list"),
    ({"otherRules": {}, "keepPolicies": []}, "ovn.otherRules: must be a list, not an object"),
    ({"otherRules": [{"id": "r1"}], "keepPolicies": []}, r"ovn.otherRules\[0\]: unknown field\(s\)|missing field"),
    ({"otherRules": [], "keepPolicies": "ns/a"}, "ovn.keepPolicies: must be a list, not a string"),
    ({"otherRules": []}, "ovn: missing field.s. keepPolicies"),
])
def test_broken_ovn_part_is_refused(ovn, message, example_config) -> None:
    doc = {"apiVersion": published.API_VERSION, "kind": published.KIND, "zones": [], "rules": [], "ovn": ovn}
    with pytest.raises(ValidationError, match=message):
        published.parse_document(doc, example_config.layout)


def test_read_published_names_the_file(tmp_path: Path, example_config) -> None:
    path = tmp_path / "gateway.json"
    with pytest.raises(ValidationError, match=f"inputs {path}: cannot read"):
        read_published(path, example_config.layout)
    path.write_text("{")
    with pytest.raises(ValidationError, match=f"inputs {path}: not a JSON document: line 1, column 2"):
        read_published(path, example_config.layout)
    path.write_text('{"kind": "ConfigMap"}')
    with pytest.raises(ValidationError, match=f"inputs {path}: missing field.s. apiVersion, zones, rules"):
        read_published(path, example_config.layout)
    text = published.render(published.document([], _registry(example_config), complete=True))
    path.write_text(text)
    assert read_published(path, example_config.layout).digest == published.digest(text)


def _registry(config):
    from zonectl.core.zones import ZoneRegistry

    return ZoneRegistry(config.layout)


def test_agent_refuses_a_document_without_the_complete_rule_set(tmp_path: Path, rules, example_zones,
                                                                example_config) -> None:
    from zonectl.ovn.agent import InputsFile

    path = tmp_path / "gateway.json"
    path.write_text(published.render(published.document(rules, example_zones)))
    source = InputsFile(path, example_config.layout)
    with pytest.raises(ValidationError, match="no `ovn` part"):
        source.load()
    sig = source.signature()
    path.write_text(published.render(published.document(rules, example_zones, complete=True, keep=["x/y"])))
    assert source.signature() != sig
    loaded = source.load()
    assert loaded.rules == rules.rules and loaded.keep == frozenset({"x/y"})


def test_ovn_mode_is_part_of_the_ovn_section(example_config) -> None:
    from zonectl.ovn.sync import SyncSettings

    SyncSettings.build({"mode": "interconnect"}, example_config.layout.cluster, True)
    with pytest.raises(ValidationError, match="ovn.mode: 'mesh' is not one of central, interconnect"):
        SyncSettings.build({"mode": "mesh"}, example_config.layout.cluster, True)


def test_run_takes_inputs_or_policies_not_both(capsys) -> None:
    base = ["ovn", "run", "--config", str(EXAMPLES / "config.yaml"), "--nb", "unix:/nonexistent.sock"]
    assert main([*base, "--inputs", "x.json", "-f", str(EXAMPLES / "policies.yaml")]) == 2
    assert "--inputs FILE and --zones/-f exclude each other" in capsys.readouterr().err
    assert main(base) == 2
    assert "nothing to sync: pass -f POLICY" in (err := capsys.readouterr().err) and "or --inputs FILE" in err
