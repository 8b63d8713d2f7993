"""Policy and zone handlers with real resource bodies against a real OVN Northbound (ovsdb-server + northd).

Every test builds an OVN-Kubernetes-shaped NB (two node switches) in a sandbox of its own, runs the
kopf handlers with kopf's Body/Patch objects and Event queue, and reads the resulting status, Events
and NB ACL rows.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from opkit import policies, zones, NAMESPACES, acl_rows, call, condition, make_state, new_controller, policy_acls, run
from zonectl.core import published
from zonectl.operator.backend import OvnBackend
from zonectl.operator.publish import FilePublisher
from zonectl.operator.handlers import Controller
from zonectl.operator.reconcile import PolicyReconciler
from zonectl.harness.sandbox import OvnSandbox
from zonectl.harness.ovnk_cluster import Cluster

pytestmark = pytest.mark.ovn


@dataclass
class Env:
    sb: OvnSandbox
    ctl: Controller
    backend: OvnBackend
    gateway_file: Path
    now: list[float]

    def nbctl(self, *args: str) -> str:
        return self.sb.nbctl(*args)

    def acls(self, key: str) -> list[dict[str, Any]]:
        return policy_acls(self.sb.nbctl, key)


@pytest.fixture
def env(tmp_path: Path, op_config) -> Iterator[Env]:
    missing = [b for b in ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install ovn-central)")
    with OvnSandbox(state_dir=tmp_path / "ovn") as sb:
        Cluster(sb.nbctl, op_config.core.layout, node_count=2).build(gateways=False)
        backend = OvnBackend.connect({"nb": sb.nb_remote, "timeout": 2}, op_config.core.layout)
        try:
            state = make_state(op_config)
            now = [1000.0]
            gw = tmp_path / "gateway.json"
            rec = PolicyReconciler(state, op_config.operator, op_config.core.nat64, backend,
                                   publisher=FilePublisher(gw), clock=lambda: now[0])
            ctl = new_controller(op_config, state)
            ctl.reconciler = rec
            rec.metrics = ctl.metrics
            yield Env(sb, ctl, backend, gw, now)
        finally:
            backend.close()


def create_all(env: Env) -> dict[str, dict]:
    ps = policies()

    async def go():
        return {name: await call(env.ctl.policy_changed, body) for name, body in ps.items()}

    handled = run(go())
    for name, h in handled.items():
        assert condition(ps[name], "Ready")["status"] == "True", ps[name]["status"]
        assert "Programmed" in h.reasons()
    return ps


def test_create_programs_status_events_and_rows(env: Env) -> None:
    ps = create_all(env)
    dmz = ps["dmz"]
    st = dmz["status"]
    assert st["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Compiled": "True", "Programmed": "True", "Ready": "True"}
    rows = env.acls("zonectl-system/dmz")
    assert len(rows) == st["ruleCount"] > 0
    # one wildcard mask selects the whole zone: value/mask of dmz in the cluster, in every row
    assert all("fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in r["match"] for r in rows)
    assert {r["external_ids"]["zonectl.io/generation"] for r in rows} == {"1"}
    for name in ("web", "db"):
        assert len(env.acls(f"zonectl-system/{name}")) == ps[name]["status"]["ruleCount"]
    # the gateway's inputs: egress rules that reach the NAT64 prefix (IPv4 allows, default denies),
    # round-tripping through the published document
    doc = json.loads(env.gateway_file.read_text())
    registry, ruleset = published.load_document(doc, env.ctl.state.layout)
    assert {r.policy for r in ruleset} == {"zonectl-system/dmz", "zonectl-system/web", "zonectl-system/db"}
    assert all(r.nat64 and r.direction == "egress" for r in ruleset)
    assert {r.name for r in ruleset if r.policy == "zonectl-system/dmz"} == {"ipv4-web", "default-egress"}
    assert {(r.name, r.action) for r in ruleset if r.policy == "zonectl-system/db"} == {("default-egress", "deny")}
    assert registry.get("web").egress is not None
    # a second reconcile with nothing changed writes nothing: no Event, no status patch, same rows
    before = acl_rows(env.nbctl)
    h = run(call(env.ctl.policy_changed, dmz))
    assert h.events == [] and "status" not in dict(h.patch)
    assert acl_rows(env.nbctl) == before


def test_update_reprograms_only_what_changed(env: Env) -> None:
    ps = create_all(env)
    db_before = env.acls("zonectl-system/db")
    web = ps["web"]
    web["metadata"]["generation"] = 2
    web["spec"]["egress"][0]["ports"] = [{"protocol": "TCP", "port": 6432}]  # to-db: 5432 -> 6432
    run(call(env.ctl.policy_changed, web))
    assert web["status"]["observedGeneration"] == 2
    assert condition(web, "Ready")["status"] == "True"
    matches = " ".join(r["match"] for r in env.acls("zonectl-system/web"))
    assert "6432" in matches and "5432" not in matches
    assert {r["uuid"] for r in env.acls("zonectl-system/db")} == {r["uuid"] for r in db_before}


def test_bad_policy_compiled_false_and_no_ovn_change(env: Env) -> None:
    ps = create_all(env)
    before = acl_rows(env.nbctl)
    web = ps["web"]
    ready_since = condition(web, "Compiled")["lastTransitionTime"]
    web["metadata"]["generation"] = 2
    web["spec"]["egress"][0]["to"] = [{"zone": "dbb"}]
    h = run(call(env.ctl.policy_changed, web))
    compiled = condition(web, "Compiled")
    assert compiled["status"] == "False" and compiled["reason"] == "InvalidPolicy"
    assert "spec.egress[0].to[0].zone: unknown zone 'dbb'" in compiled["message"]
    programmed = condition(web, "Programmed")
    assert programmed["status"] == "True" and programmed["reason"] == "PreviousGeneration"
    assert "generation 1" in programmed["message"]
    assert condition(web, "Ready")["status"] == "False"
    assert web["status"]["observedGeneration"] == 2
    assert compiled["lastTransitionTime"] >= ready_since
    (event,) = [e for e in h.events if e.reason == "CompileFailed"]
    assert event.type == "Warning" and "unknown zone 'dbb'" in event.message
    assert acl_rows(env.nbctl) == before  # not one row touched
    # a brand-new policy that never compiled: nothing programmed at all
    new = copy.deepcopy(ps["db"])
    new["metadata"].update(name="broken", uid="uid-broken")
    new["spec"]["priority"] = 1000
    run(call(env.ctl.policy_changed, new))
    assert condition(new, "Compiled")["reason"] == "InvalidPolicy" and "spec.priority" in condition(new, "Compiled")["message"]
    assert condition(new, "Programmed")["reason"] == "NotCompiled"
    assert acl_rows(env.nbctl) == before


def test_zone_change_recompiles_the_policies_that_use_it(env: Env) -> None:
    ps = create_all(env)
    zs = zones()
    web_zone = zs["web"]
    web_zone["metadata"]["generation"] = 2
    web_zone["spec"]["id"] = 0x2200
    h = run(call(env.ctl.zone_changed, web_zone))
    assert condition(web_zone, "Ready")["status"] == "True" and "0x2200" in condition(web_zone, "Ready")["message"]
    assert h.events == []
    # web (governed) and dmz (egress to web) are marked; db (ingress from web) too
    assert env.ctl.rec.dirty == {"zonectl-system/web", "zonectl-system/dmz", "zonectl-system/db"}

    async def ticks():
        for body in ps.values():
            await call(env.ctl.policy_tick, body)

    run(ticks())
    assert env.ctl.rec.dirty == set()
    web_rows = " ".join(r["match"] for r in env.acls("zonectl-system/web"))
    assert "fd00:10:244:0:2200::/ffff:ffff:ffff:0:ffff::" in web_rows and ":2100::" not in web_rows
    assert any(":2200::" in r["match"] for r in env.acls("zonectl-system/dmz"))
    # an invalid zone change (an id clash with dmz) is refused, reported, and changes nothing
    before = acl_rows(env.nbctl)
    web_zone["spec"]["id"] = 0x2000
    h = run(call(env.ctl.zone_changed, web_zone))
    assert condition(web_zone, "Ready")["status"] == "False" and "both use id 0x2000" in condition(web_zone, "Ready")["message"]
    assert "InvalidZone" in h.reasons()
    run(ticks())
    assert acl_rows(env.nbctl) == before


def test_delete_removes_exactly_its_rows(env: Env) -> None:
    ps = create_all(env)
    env.nbctl("--id=@a", "create", "ACL", "direction=to-lport", "priority=1001", "action=allow-related",
              'match="ip6.src == fd00:10:244:1::99"', "external_ids:k8s.ovn.org/owner-controller=default-network-controller",
              "--", "add", "Logical_Switch", "node1", "acls", "@a")  # an OVN-Kubernetes row, not ours

    def rows(pred):
        return sorted((r for r in acl_rows(env.nbctl) if pred(r["external_ids"])), key=lambda r: r["uuid"])

    keep = {k: {r["uuid"] for r in env.acls(k)} for k in ("zonectl-system/web", "zonectl-system/db")}
    foreign = rows(lambda ids: ids.get("k8s.ovn.org/owner-controller") != "zonectl")
    exemptions = rows(lambda ids: ids.get("zonectl.io/role") == "exempt")
    assert len(foreign) == 1 and exemptions
    run(call(env.ctl.policy_deleted, ps["dmz"]))
    assert env.acls("zonectl-system/dmz") == []
    assert {k: {r["uuid"] for r in env.acls(k)} for k in keep} == keep
    assert rows(lambda ids: ids.get("k8s.ovn.org/owner-controller") != "zonectl") == foreign
    assert rows(lambda ids: ids.get("zonectl.io/role") == "exempt") == exemptions
    doc = json.loads(env.gateway_file.read_text())
    assert {r["policy"] for r in doc["rules"]} == {"zonectl-system/web", "zonectl-system/db"}


def test_tenant_authority_enforced_and_revoked(env: Env) -> None:
    create_all(env)
    tenant = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
              "metadata": {"name": "web-own", "namespace": "web-apps", "generation": 1, "uid": "uid-t"},
              "spec": {"zones": ["web"], "priority": 600, "egress": [],
                       "ingress": [{"name": "metrics", "action": "Allow", "from": [{"any": True}],
                                    "ports": [{"protocol": "TCP", "port": 9100}]}]}}
    escalate = copy.deepcopy(tenant)
    escalate["metadata"].update(name="db-open", uid="uid-e")
    escalate["spec"]["zones"] = ["db"]
    run(call(env.ctl.policy_changed, tenant))
    h = run(call(env.ctl.policy_changed, escalate))
    assert condition(tenant, "Ready")["status"] == "True" and len(env.acls("web-apps/web-own")) == 3  # + 2 defaults
    assert condition(escalate, "Compiled")["reason"] == "Unauthorized"
    assert "may not place pods in zone 'db'" in condition(escalate, "Compiled")["message"]
    assert "Unauthorized" in h.reasons() and env.acls("web-apps/db-open") == []
    # the zone stops allowing web-apps: the tenant's policy loses its authority and its rows
    web_zone = zones()["web"]
    web_zone["metadata"]["generation"] = 2
    web_zone["spec"]["namespaces"] = ["dmz-apps"]
    run(call(env.ctl.zone_changed, web_zone))
    h = run(call(env.ctl.policy_tick, tenant))
    assert condition(tenant, "Compiled")["reason"] == "Unauthorized"
    assert "RulesRemoved" in h.reasons() and env.acls("web-apps/web-own") == []
    assert tenant["status"]["ruleCount"] == 0


def test_periodic_resync_repairs_drift(env: Env) -> None:
    ps = create_all(env)
    rows = env.acls("zonectl-system/db")
    victim = rows[0]
    env.nbctl("set", "ACL", victim["uuid"], "action=allow", "priority=1")
    tampered = next(r for r in env.acls("zonectl-system/db") if r["uuid"] == victim["uuid"])
    assert (tampered["action"], tampered["priority"]) == ("allow", 1)
    h = run(call(env.ctl.policy_tick, ps["db"]))  # not due yet: nothing happens
    assert h.events == [] and next(r for r in env.acls("zonectl-system/db") if r["uuid"] == victim["uuid"])["priority"] == 1
    env.now[0] += env.ctl.settings.resync_seconds
    h = run(call(env.ctl.policy_tick, ps["db"]))
    repaired = next(r for r in env.acls("zonectl-system/db") if r["uuid"] == victim["uuid"])
    assert (repaired["action"], repaired["priority"]) == (victim["action"], victim["priority"])
    assert "Programmed" in h.reasons() and "updated 1" in h.events[0].message


def test_zone_status_counts_pods_and_mismatches(env: Env) -> None:
    zs = zones()
    ctl = env.ctl

    def pod(name: str, zone: str | None, ip: str, networks: str | None = None) -> dict:
        meta: dict[str, Any] = {"name": name, "namespace": "dmz-apps", "uid": f"uid-{name}",
                                "labels": {"securityZone": zone} if zone else {}}
        if networks:
            meta["annotations"] = {"k8s.ovn.org/pod-networks": json.dumps({"default": {"ip_addresses": [networks]}})}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "status": {"phase": "Running", "podIPs": [{"ip": ip}] if ip else []}}

    async def go():
        out = []
        out.append(await call(ctl.pod_seen, pod("good", "dmz", "fd00:10:244:1:2000::5"), type="ADDED"))
        out.append(await call(ctl.pod_seen, pod("pending", "dmz", ""), type="ADDED"))
        out.append(await call(ctl.pod_seen, pod("bad", "dmz", "", "fd00:10:244:2::7/64"), type="ADDED"))
        out.append(await call(ctl.pod_seen, pod("bad", "dmz", "fd00:10:244:2::7", "fd00:10:244:2::7/64"), type="MODIFIED"))
        out.append(await call(ctl.zone_status, zs["dmz"]))
        return out

    good, pending, bad, bad_again, status = run(go())
    assert good.events == [] and pending.events == []
    (event,) = bad.events
    assert event.reason == "ZoneAddressMismatch" and event.ref["name"] == "bad"
    assert "fd00:10:244:2::7 carries no zone (0x0) but the pod is in zone dmz (0x2000)" in event.message
    assert bad_again.events == []  # reported once, not on every pod update
    st = zs["dmz"]["status"]
    assert (st["podCount"], st["mismatchCount"]) == (3, 1)
    assert condition(zs["dmz"], "AddressesVerified")["status"] == "False"
    assert "dmz-apps/bad" in condition(zs["dmz"], "AddressesVerified")["message"]
    text = ctl.metrics.exposition().decode()
    assert 'zonectl_zone_address_mismatches{zone="dmz"} 1.0' in text and 'zonectl_zone_pods{zone="dmz"} 3.0' in text
    run(call(ctl.pod_seen, pod("bad", "dmz", "fd00:10:244:2::7"), type="DELETED"))
    run(call(ctl.zone_status, zs["dmz"]))
    assert (zs["dmz"]["status"]["podCount"], zs["dmz"]["status"]["mismatchCount"]) == (2, 0)


def test_backend_failure_is_reported_and_retried(env: Env) -> None:
    ps = create_all(env)
    web = ps["web"]
    web["metadata"]["generation"] = 2
    web["spec"]["egress"][0]["ports"] = [{"protocol": "TCP", "port": 6432}]
    env.sb.kill_nb()
    try:
        h = run(call(env.ctl.policy_changed, web))
    finally:
        env.sb.start_nb()
    programmed = condition(web, "Programmed")
    assert programmed["status"] == "False" and programmed["reason"] == "SyncFailed"
    assert f"still enforcing the {web['status']['ruleCount']} rules of generation 1" in programmed["message"]
    assert condition(web, "Compiled")["status"] == "True" and condition(web, "Ready")["status"] == "False"
    assert "SyncFailed" in h.reasons()
    assert "zonectl-system/web" in env.ctl.rec.dirty  # the timer retries without waiting for the resync
    import time
    deadline = time.monotonic() + 20
    while True:
        run(call(env.ctl.policy_tick, web))
        if condition(web, "Ready")["status"] == "True" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert condition(web, "Ready")["status"] == "True"
    assert "6432" in " ".join(r["match"] for r in env.acls("zonectl-system/web"))
    text = env.ctl.metrics.exposition().decode()
    assert 'zonectl_reconcile_errors_total{kind="policy",reason="sync-error"}' in text


def test_namespace_label_change_revokes_a_selector_granted_policy(env: Env) -> None:
    create_all(env)
    ctl = env.ctl
    edge = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge", "labels": dict(NAMESPACES["edge"])}}
    run(call(ctl.namespace_changed, edge, type=None))  # initial listing: nothing to recheck
    tenant = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
              "metadata": {"name": "edge-dmz", "namespace": "edge", "generation": 1, "uid": "uid-edge"},
              "spec": {"zones": ["dmz"], "priority": 700, "ingress": [],
                       "egress": [{"name": "dns", "action": "Allow", "to": [{"any": True}],
                                   "ports": [{"protocol": "UDP", "port": 53}]}]}}
    run(call(ctl.policy_changed, tenant))
    assert condition(tenant, "Ready")["status"] == "True" and len(env.acls("edge/edge-dmz")) == 3  # + 2 defaults
    assert ctl.rec.dirty == set()
    del edge["metadata"]["labels"]["zonectl.io/zone-dmz"]
    run(call(ctl.namespace_changed, edge, type="MODIFIED"))
    assert ctl.rec.dirty == {"edge/edge-dmz"}
    assert ctl.state.allows("edge", "dmz") is False  # the webhook's table follows at once
    run(call(ctl.policy_tick, tenant))
    assert condition(tenant, "Compiled")["reason"] == "Unauthorized" and env.acls("edge/edge-dmz") == []



def test_restart_resumes_without_reordering(env: Env, op_config) -> None:
    """A restarted controller seeds every listed policy first: the first resume syncs them all at once,
    with the priorities they had, so nothing flaps; rows of a policy that no longer compiles stay."""
    ps = create_all(env)
    guard = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",  # a second policy on zone dmz
             "metadata": {"name": "dmz-guard", "namespace": "zonectl-system", "generation": 1, "uid": "uid-g"},
             "spec": {"zones": ["dmz"], "priority": 50, "ingress": [],
                      "egress": [{"name": "no-db", "action": "Deny", "to": [{"zone": "db", "scope": "Cluster"}],
                                  "ports": [{"protocol": "Any"}]}]}}
    run(call(env.ctl.policy_changed, guard))
    before = {(r["uuid"], r["priority"], r["match"]) for r in acl_rows(env.nbctl)}
    broken = copy.deepcopy(ps["db"])
    broken["spec"]["ingress"][0]["from"] = [{"zone": "gone"}]

    def restart(seeded: list[dict]) -> None:
        fresh = PolicyReconciler(make_state(op_config), op_config.operator, op_config.core.nat64, env.backend,
                                 clock=lambda: env.now[0])
        fresh.seed(seeded)
        env.ctl.reconciler = fresh
        run(call(env.ctl.policy_changed, copy.deepcopy(ps["dmz"])))  # the first resume after the restart

    restart([ps["dmz"], ps["web"], guard, broken])
    assert {(r["uuid"], r["priority"], r["match"]) for r in acl_rows(env.nbctl)} == before
    assert env.ctl.rec.seed([broken]) == 0  # it does not compile any more ...
    h = run(call(env.ctl.policy_changed, broken))
    assert "CompileFailed" in h.reasons() and condition(broken, "Programmed")["reason"] == "NotCompiled"
    assert {(r["uuid"], r["priority"], r["match"]) for r in acl_rows(env.nbctl)} == before  # ... and its rows stay
    # the counter-check: without seeding, the first resumed policy is ranked alone and dmz's rows move
    restart([])
    assert {(r["uuid"], r["priority"], r["match"]) for r in acl_rows(env.nbctl)} != before


def test_deleting_the_last_policy_keeps_its_rows_until_allow_empty(env: Env, op_config) -> None:
    """Without ovn.allowEmpty the last policy's rows are not deleted (no zone rule at all is the most open state):
    the finalizer stays (kopf retries) with a Warning Event saying why; with it, the deletion goes through."""
    import kopf

    from zonectl.operator.backend import OvnBackend

    ps = create_all(env)
    for name in ("dmz", "web"):
        run(call(env.ctl.policy_deleted, ps[name]))
    db_rows = env.acls("zonectl-system/db")
    assert db_rows
    with pytest.raises(kopf.TemporaryError, match="the rule set is empty"):
        run(call(env.ctl.policy_deleted, ps["db"]))
    assert env.acls("zonectl-system/db") == db_rows
    ready = condition(ps["db"], "Ready")  # where a user sees it, also in a namespace being deleted (no Events there)
    assert (ready["status"], ready["reason"]) == ("False", "RemoveFailed") and "the rule set is empty" in ready["message"]
    assert condition(ps["db"], "Compiled")["status"] == "True"  # the other conditions stay as they were
    allowing = OvnBackend.connect({"nb": env.sb.nb_remote, "timeout": 2, "allowEmpty": True}, op_config.core.layout)
    try:
        env.ctl.reconciler.backend = allowing
        run(call(env.ctl.policy_deleted, ps["db"]))  # kopf's retry, once the operator opted in
        assert env.acls("zonectl-system/db") == []
    finally:
        allowing.close()
