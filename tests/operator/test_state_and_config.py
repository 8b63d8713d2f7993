"""Pure parts of the operator layer: the precomputed admission table, authority, verification, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opkit import config_body, make_state, run, zone_bodies
from zonectl.core.errors import ValidationError
from zonectl.core import published
from zonectl.operator.publish import FilePublisher
from zonectl.operator.admission import decide_create
from zonectl.operator.authority import authority_problems
from zonectl.operator.config import load_controller_config, parse_controller_config
from zonectl.operator.run import RunOptions, StartupError, run as run_controller, webhook_server
from zonectl.operator.verify import PodTracker, observe, pod_addresses
from zonectl.operator.zonestate import ZoneState, hint_value


def test_hint_value_is_the_zone_id_in_the_zone_field(op_config) -> None:
    layout = op_config.core.layout
    assert hint_value(layout, 0x2000) == "::2000:0:0:0"
    # OR-ing it into an address the allocator computed gives the encoded address
    from ipaddress import IPv6Address
    assert IPv6Address(int(IPv6Address("fd00:10:244:2::5")) | int(IPv6Address(hint_value(layout, 0x2000)))) == \
        layout.encode("fd00:10:244:2::/64", 0x2000, 5)


def test_table_follows_namespace_labels_and_zone_changes(op_config, state: ZoneState) -> None:
    s = op_config.operator
    assert decide_create("edge", {"securityZone": "dmz"}, {}, state.table, s).allowed
    table_before = state.table
    assert state.set_namespace("edge", {"kubernetes.io/metadata.name": "edge"})  # label removed
    assert not state.set_namespace("edge", {"kubernetes.io/metadata.name": "edge"})  # no change, no rebuild
    assert state.table is not table_before  # a new snapshot; the old one is untouched
    assert decide_create("edge", {"securityZone": "dmz"}, {}, table_before, s).allowed
    d = decide_create("edge", {"securityZone": "dmz"}, {}, state.table, s)
    assert (d.allowed, d.code) == (False, 403)
    # zone dmz now lists edge by name
    dmz = next(z for z in zone_bodies() if z["metadata"]["name"] == "dmz")
    dmz["spec"]["namespaces"] = ["dmz-apps", "edge"]
    state.upsert_zone(dmz)
    assert decide_create("edge", {"securityZone": "dmz"}, {}, state.table, s).allowed
    # a namespace not seen yet: listed by name is fine, selector-only needs its labels (retry)
    assert decide_create("new-ns", {"securityZone": "web"}, {}, state.table, s).code == 403
    dmz["spec"]["namespaces"] = ["dmz-apps", "new-ns"]
    state.upsert_zone(dmz)
    assert decide_create("new-ns", {"securityZone": "dmz"}, {}, state.table, s).allowed
    dmz["spec"]["namespaces"] = ["dmz-apps"]
    state.upsert_zone(dmz)
    assert decide_create("new-ns", {"securityZone": "dmz"}, {}, state.table, s).code == 503


def test_invalid_zone_changes_nothing(op_config, state: ZoneState) -> None:
    web = next(z for z in zone_bodies() if z["metadata"]["name"] == "web")
    web["spec"]["id"] = 0x2000  # dmz's id
    table, registry = state.table, state.registry
    with pytest.raises(ValidationError, match="both use id 0x2000"):
        state.upsert_zone(web)
    assert state.table is table and state.registry is registry
    assert "web" in state.zone_errors
    web["spec"]["id"] = 0x10000  # wider than the 16-bit field
    with pytest.raises(ValidationError, match="does not fit"):
        state.upsert_zone(web)
    assert state.registry.get("web").id == 0x2100


def test_authority_rules(op_config, state: ZoneState) -> None:
    s = op_config.operator

    def policy(ns, zones, priority=500):
        return {"metadata": {"name": "p", "namespace": ns}, "spec": {"zones": zones, "priority": priority}}

    assert authority_problems(policy("zonectl-system", ["db"], 0), state, s) == []
    assert authority_problems(policy("web-apps", ["web"]), state, s) == []
    assert authority_problems(policy("edge", ["dmz"]), state, s) == []  # by namespaceSelector
    (p,) = authority_problems(policy("web-apps", ["db"]), state, s)
    assert p.path == "spec.zones[0]" and "'web-apps' may not place pods in zone 'db'" in p.reason
    (p,) = authority_problems(policy("web-apps", ["web"], 99), state, s)
    assert p.path == "spec.priority"
    (p,) = authority_problems(policy("web-apps", ["ghost"]), state, s)
    assert "does not exist" in p.reason
    (p,) = authority_problems(policy("unseen", ["dmz"]), state, s)  # labels unknown yet: retry, not guess
    assert "not known yet" in p.reason


def test_pod_addresses_and_verdicts(op_config, state: ZoneState) -> None:
    layout = op_config.core.layout
    body = {"metadata": {"uid": "u", "namespace": "dmz-apps", "name": "p", "labels": {"securityZone": "dmz"},
                         "annotations": {"k8s.ovn.org/pod-networks": json.dumps(
                             {"default": {"ip_addresses": ["fd00:10:244:2:2000::5/64"], "mac_address": "0a:58:00:00:00:05"}})}},
            "status": {"podIPs": [{"ip": "fd00:10:244:2:2000::5"}, {"ip": "10.0.0.5"}], "podIP": "fd00:10:244:2:2000::5"}}
    assert [str(a) for a in pod_addresses(body, layout)] == ["fd00:10:244:2:2000::5"]
    assert observe(body, state.registry, "securityZone").mismatch is None
    body["metadata"]["labels"]["securityZone"] = "web"  # label changed on a running pod
    assert "carries zone dmz (0x2000) but the pod is in zone web (0x2100)" in observe(body, state.registry, "securityZone").mismatch
    host = {"metadata": {"uid": "h", "namespace": "kube-system", "name": "h"}, "status": {"podIPs": [{"ip": "2001:db8::1"}]}}
    assert observe(host, state.registry, "securityZone").addresses == ()
    tracker = PodTracker()
    assert tracker.update(observe(body, state.registry, "securityZone")) is True
    assert tracker.update(observe(body, state.registry, "securityZone")) is False
    assert (tracker.pods_in("web"), tracker.mismatches_in("web")) == (1, 1)
    # zone web is renumbered to the id the address carries: the mismatch disappears on reverify
    web = next(z for z in zone_bodies() if z["metadata"]["name"] == "web")
    state.remove_zone("dmz")
    web["spec"]["id"] = 0x2000
    state.upsert_zone(web)
    assert tracker.reverify(state.registry, "securityZone") == []
    assert tracker.mismatches_in("web") == 0
    tracker.forget("u")
    assert tracker.pods_in("web") == 0


def test_gateway_document_round_trip(op_config, state: ZoneState, tmp_path: Path) -> None:
    from opkit import policy_bodies
    from zonectl.core.rules import compile_objects

    rules = compile_objects(policy_bodies(), state.registry, op_config.core.nat64)
    doc = published.document(rules, state.registry)
    pub = FilePublisher(tmp_path / "gw" / "gateway.json")
    pub.publish(published.render(doc))
    registry, ruleset = published.load_document(json.loads(pub.path.read_text()), op_config.core.layout)
    assert ruleset.rules == rules.for_gateway()
    assert [z.name for z in registry] == [z.name for z in state.registry]
    with pytest.raises(ValidationError, match=r"missing field\(s\) apiVersion, zones, rules"):
        published.load_document({"kind": "ConfigMap"}, op_config.core.layout)


def test_config_errors_are_complete_and_clear(tmp_path: Path) -> None:
    body = config_body(labelKey="bad key!", spoofedHint="maybe", adminNamespaces="zonectl-system",
                       webhook={"certFile": "/x"}, peering={"name": "Zonectl"}, unknown=1)
    with pytest.raises(ValidationError) as err:
        parse_controller_config(body)
    text = str(err.value)
    for needle in ("operator.labelKey", "operator.spoofedHint", "operator.adminNamespaces", "certFile and keyFile",
                   "operator.peering.name", "unknown field(s) unknown"):
        assert needle in text
    path = tmp_path / "zonectl.yaml"
    path.write_text("layout: [not, a, map]\n")
    with pytest.raises(ValidationError, match=str(path)):
        load_controller_config(path)
    ok = parse_controller_config(config_body(spoofedHint="deny", adminNamespaces=["platform"]))
    assert ok.operator.spoofed_hint == "deny" and ok.operator.is_admin("platform") and not ok.operator.is_admin("zonectl-system")


def test_startup_fails_with_one_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "zonectl.yaml"
    path.write_text(yaml.safe_dump(config_body()))
    with pytest.raises(StartupError, match="no Kubernetes credentials"):
        run(run_controller(RunOptions(path, kubeconfig=str(tmp_path / "missing-kubeconfig"), log_format="text")))
    config = parse_controller_config(config_body())
    from zonectl.operator.handlers import Controller
    ctl = Controller(config=config, state=ZoneState(config.core.layout))
    with pytest.raises(StartupError, match="certFile and keyFile are required"):
        webhook_server(config, ctl.metrics, ctl)


def test_registries_build() -> None:
    """Both kopf registries assemble (decorator arguments are checked by kopf at registration)."""
    from zonectl.operator.handlers import admission_registry, controller_registry
    from zonectl.operator.config import parse_controller_config

    config = parse_controller_config(config_body())
    from opkit import new_controller
    ctl = new_controller(config, make_state(config))
    adm, con = admission_registry(ctl), controller_registry(ctl)
    assert adm is not con


def test_no_diff_base_for_watch_only_kinds() -> None:
    """kopf keeps no diff base (a deep copy per event) for pods, and only because nothing needs one:
    the controller watches pods with on.event handlers alone, and keeps diff bases for zones and policies."""
    import kopf
    from kopf._cogs.structs.references import Resource  # what kopf's processing asks its registry with

    from opkit import new_controller
    from zonectl.operator.config import parse_controller_config
    from zonectl.operator.handlers import WATCH_ONLY, controller_registry
    from zonectl.operator.webhook import operator_settings

    config = parse_controller_config(config_body())
    reg = controller_registry(new_controller(config, make_state(config)))
    pods = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
    policies = Resource(group="zonectl.io", version="v1alpha1", plural="securityzonepolicies",
                        kind="SecurityZonePolicy", namespaced=True)
    assert WATCH_ONLY == ("Pod",) and reg._watching.has_handlers(resource=pods)
    assert not reg._changing.has_handlers(resource=pods) and not reg._spawning.has_handlers(resource=pods)
    assert reg._changing.has_handlers(resource=policies)

    storage = operator_settings(watch_only=WATCH_ONLY).persistence.diffbase_storage
    pod = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {}})
    policy = kopf.Body({"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
                        "metadata": {"name": "p"}, "spec": {"zones": ["dmz"]}})
    assert storage.build(body=pod) is None and storage.fetch(body=pod) is None
    assert storage.build(body=policy)["spec"] == {"zones": ["dmz"]}
    assert operator_settings().persistence.diffbase_storage.build(body=pod)["metadata"]["labels"] == {"a": "b"}
