"""The controller in OVN interconnect mode (``ovn.mode: interconnect``): compile, publish, report ``Published``.

There is no NB for the controller here: the published document (with its ``ovn`` part) is what every
node's agent syncs. The last test closes the loop with real OVN: the rows an agent writes from the
published document equal the rows the central-mode controller writes itself.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opkit import (acl_rows, call, condition, config_body, make_state, new_controller, policies, run,
                   zone_bodies)
from zonectl.core.errors import ValidationError
from zonectl.core import published
from zonectl.inputs import read_published
from zonectl.operator.backend import OvnBackend, PublishedBackend
from zonectl.operator.config import parse_controller_config
from zonectl.operator.publish import FilePublisher
from zonectl.operator.handlers import Controller
from zonectl.operator.reconcile import PolicyReconciler
from zonectl.operator.run import StartupError, connect_backend


@pytest.fixture
def ic_config():
    body = config_body()
    body["ovn"] = {"mode": "interconnect", "drift": "repair"}
    return parse_controller_config(body)


class FlakyPublisher:
    """A FilePublisher that fails while ``broken`` is set (an API server that refuses the patch)."""

    def __init__(self, path: Path) -> None:
        self.inner = FilePublisher(path)
        self.broken = False

    def publish(self, text: str) -> None:
        if self.broken:
            raise RuntimeError("configmaps \"zonectl-gateway-rules\" is forbidden")
        self.inner.publish(text)


@dataclass
class IC:
    ctl: Controller
    rec: PolicyReconciler
    publisher: FlakyPublisher
    path: Path
    now: list[float]

    def doc(self) -> published.Published:
        return read_published(self.path, self.ctl.state.layout)


@pytest.fixture
def ic(tmp_path: Path, ic_config) -> IC:
    state = make_state(ic_config)
    now = [1000.0]
    pub = FlakyPublisher(tmp_path / "inputs" / "gateway.json")
    backend = connect_backend(ic_config, None)
    assert isinstance(backend, PublishedBackend)
    rec = PolicyReconciler(state, ic_config.operator, ic_config.core.nat64, backend, publisher=pub,
                           clock=lambda: now[0])
    ctl = new_controller(ic_config, state)
    ctl.reconciler = rec
    rec.metrics = ctl.metrics
    return IC(ctl, rec, pub, pub.inner.path, now)


def create_all(ic: IC) -> dict[str, dict]:
    ps = policies()

    async def go():
        return {name: await call(ic.ctl.policy_changed, body) for name, body in ps.items()}

    for name, h in run(go()).items():
        assert condition(ps[name], "Ready")["status"] == "True", ps[name]["status"]
        assert h.reasons() == ["Published"]
    return ps


def test_config_switch(ic_config) -> None:
    assert ic_config.interconnect and ic_config.ovn_mode == "interconnect"
    central = parse_controller_config(config_body())
    assert not central.interconnect and central.ovn_mode == "central"
    body = config_body()
    body["ovn"] = {"mode": "distributed"}
    with pytest.raises(ValidationError, match=r"ovn\.mode: 'distributed' is not one of central, interconnect"):
        parse_controller_config(body)
    body = config_body(gateway={"configMap": None})
    body["ovn"] = {"mode": "interconnect"}
    with pytest.raises(ValidationError, match="operator.gateway: ovn.mode interconnect needs somewhere to publish"):
        parse_controller_config(body)
    # no NB remote needed, none connected; a typo in the ovn section (the agents read it too) stops the start:
    # the section is parsed with the rest of the config (so `operator check-config` refuses it too)
    body = config_body()
    body["ovn"] = {"mode": "interconnect", "dirft": "log"}
    with pytest.raises(ValidationError, match="unknown field.*dirft"):
        connect_backend(parse_controller_config(body), None)
    with pytest.raises(StartupError, match="ovn.mode: interconnect"):  # central without nb: the hint
        connect_backend(central, None)


def test_drift_log_or_off_is_not_reported_as_enforced(tmp_path: Path) -> None:
    for drift, reason in (("log", "LogOnly"), ("off", "Disabled")):
        body = config_body()
        body["ovn"] = {"mode": "interconnect", "drift": drift}
        config = parse_controller_config(body)
        state = make_state(config)
        path = tmp_path / drift / "gateway.json"
        rec = PolicyReconciler(state, config.operator, config.core.nat64, connect_backend(config, None),
                               publisher=FilePublisher(path))
        ctl = new_controller(config, state)
        ctl.reconciler = rec
        body = policies()["dmz"]
        run(call(ctl.policy_changed, body))
        assert condition(body, "Programmed")["reason"] == reason and condition(body, "Ready")["status"] == "False"
        # still published: in log mode the agents report what they would change
        assert "zonectl-system/dmz" in {r.policy for r in read_published(path, state.layout).complete}


def test_publishes_every_rule_and_reports_published(ic: IC) -> None:
    ps = create_all(ic)
    programmed = condition(ps["dmz"], "Programmed")
    assert programmed["reason"] == "Published" and "rules published to the OVN node agents" in programmed["message"]
    doc = ic.doc()
    union = [r for rs in ic.rec.good.values() for r in rs]
    assert doc.complete is not None and {r.id for r in doc.complete} == {r.id for r in union}
    assert doc.keep == ()
    # the gateway's part is exactly what it was before the ovn part existed
    registry, gateway_rules = published.load_document(json.loads(ic.path.read_text()), ic.ctl.state.layout)
    central = published.document(union, ic.ctl.state.registry)
    assert [published.rule_to_dict(r) for r in gateway_rules] == central["rules"]
    # nothing changed: no Event, no status write, the same document
    text = ic.path.read_text()
    h = run(call(ic.ctl.policy_changed, ps["dmz"]))
    assert h.events == [] and "status" not in dict(h.patch) and ic.path.read_text() == text
    # an invalid generation keeps the previous rules, in the document too
    web = ps["web"]
    web["metadata"]["generation"] = 2
    web["spec"]["egress"][0]["to"] = [{"zone": "nowhere"}]
    run(call(ic.ctl.policy_changed, web))
    assert condition(web, "Programmed")["reason"] == "PreviousGeneration" and ic.path.read_text() == text


def test_delete_and_revoked_authority_leave_the_document(ic: IC) -> None:
    ps = create_all(ic)
    tenant = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
              "metadata": {"name": "web-own", "namespace": "web-apps", "generation": 1, "uid": "uid-t"},
              "spec": {"zones": ["web"], "priority": 600, "egress": [],
                       "ingress": [{"name": "metrics", "action": "Allow", "from": [{"any": True}],
                                    "ports": [{"protocol": "TCP", "port": 9100}]}]}}
    run(call(ic.ctl.policy_changed, tenant))
    assert "web-apps/web-own" in {r.policy for r in ic.doc().complete}
    # the zone stops allowing web-apps: the policy's rules leave the document (and are not kept)
    web_zone = copy.deepcopy(next(z for z in zone_bodies() if z["metadata"]["name"] == "web"))
    web_zone["metadata"].update(generation=2, uid="uid-zone-web")
    web_zone["spec"]["namespaces"] = ["dmz-apps"]
    run(call(ic.ctl.zone_changed, web_zone))
    run(call(ic.ctl.policy_tick, tenant))
    assert condition(tenant, "Compiled")["reason"] == "Unauthorized"
    doc = ic.doc()
    assert "web-apps/web-own" not in {r.policy for r in doc.complete} and "web-apps/web-own" not in doc.keep
    run(call(ic.ctl.policy_deleted, ps["dmz"]))
    doc = ic.doc()
    assert "zonectl-system/dmz" not in {r.policy for r in doc.complete} and "zonectl-system/dmz" not in doc.keep


def test_a_policy_that_does_not_compile_after_a_restart_is_kept(ic: IC, ic_config) -> None:
    ps = policies()
    broken = copy.deepcopy(ps["db"])
    broken["spec"]["ingress"][0]["from"] = [{"zone": "gone"}]
    fresh = PolicyReconciler(make_state(ic_config), ic_config.operator, ic_config.core.nat64, PublishedBackend(),
                             publisher=ic.publisher, clock=lambda: ic.now[0])
    assert fresh.seed([ps["dmz"], ps["web"], broken]) == 2
    ic.ctl.reconciler = fresh
    h = run(call(ic.ctl.policy_changed, ps["dmz"]))  # the first resume: the seeded rules, no Event
    assert h.events == []
    run(call(ic.ctl.policy_changed, broken))
    assert condition(broken, "Programmed")["reason"] == "NotCompiled"
    doc = ic.doc()
    # its rows stay on every node (keep), exactly as a central controller keeps them
    assert doc.keep == ("zonectl-system/db",) and "zonectl-system/db" not in {r.policy for r in doc.complete}


def test_a_failed_publish_is_a_failed_program_and_is_retried(ic: IC) -> None:
    ps = create_all(ic)
    web = ps["web"]
    web["metadata"]["generation"] = 2
    web["spec"]["egress"][0]["ports"] = [{"protocol": "TCP", "port": 6432}]
    ic.publisher.broken = True
    h = run(call(ic.ctl.policy_changed, web))
    programmed = condition(web, "Programmed")
    assert programmed["status"] == "False" and programmed["reason"] == "PublishFailed" and "forbidden" in programmed["message"]
    assert "PublishFailed" in h.reasons() and "zonectl-system/web" in ic.rec.dirty
    assert "6432" not in ic.path.read_text()
    with pytest.raises(Exception, match="could not publish the removal"):  # the finalizer stays
        run(call(ic.ctl.policy_deleted, ps["db"]))
    ic.publisher.broken = False
    run(call(ic.ctl.policy_tick, web))
    assert condition(web, "Programmed")["reason"] == "Published" and "6432" in ic.path.read_text()
    run(call(ic.ctl.policy_deleted, ps["db"]))  # kopf's retry
    assert "zonectl-system/db" not in {r.policy for r in ic.doc().complete}
    # a document reset behind the controller's back comes back at the next resync
    ic.path.write_text('{"apiVersion": "zonectl.io/v1alpha1", "kind": "GatewayInputs", "rules": [], "zones": []}')
    ic.now[0] += ic.ctl.settings.resync_seconds
    run(call(ic.ctl.policy_tick, ps["dmz"]))
    assert ic.doc().complete is not None and "zonectl-system/dmz" in {r.policy for r in ic.doc().complete}


def test_agent_rows_equal_the_central_controllers_rows(ic: IC, op_config, tmp_path: Path) -> None:
    """The same policies through both modes, into two real NBs of the same shape: identical rule rows."""
    missing = [b for b in ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install ovn-central)")
    from zonectl.ovn.agent import Agent, InputsFile
    from zonectl.ovn.connection import connect
    from zonectl.harness.sandbox import OvnSandbox
    from zonectl.ovn.sync import SyncSettings
    from zonectl.harness.ovnk_cluster import Cluster

    create_all(ic)
    with OvnSandbox(state_dir=tmp_path / "central") as central_nb, OvnSandbox(state_dir=tmp_path / "node") as node_nb:
        for sb in (central_nb, node_nb):
            Cluster(sb.nbctl, op_config.core.layout, node_count=2).build(gateways=False)
        backend = OvnBackend.connect({"nb": central_nb.nb_remote, "timeout": 5}, op_config.core.layout)
        try:
            state = make_state(op_config)
            central = PolicyReconciler(state, op_config.operator, op_config.core.nat64, backend)
            ctl = new_controller(op_config, state)
            ctl.reconciler = central

            async def go():
                for body in policies().values():
                    await call(ctl.policy_changed, body)

            run(go())
        finally:
            backend.close()
        with connect(node_nb.nb_remote, timeout=5) as nb:
            agent = Agent(nb, InputsFile(ic.path, op_config.core.layout),
                          SyncSettings.build({}, op_config.core.layout.cluster, nb.has_tier))
            assert agent.check_inputs() and agent.sync_once() is not None

        def rule_rows(sb) -> list[tuple[Any, ...]]:
            return sorted((r["direction"], r["priority"], r["action"], r["match"], r["external_ids"].get("zonectl.io/rule"))
                          for r in acl_rows(sb.nbctl) if r["external_ids"].get("k8s.ovn.org/owner-controller") == "zonectl")

        assert rule_rows(node_nb) == rule_rows(central_nb) and len(rule_rows(node_nb)) > 24
