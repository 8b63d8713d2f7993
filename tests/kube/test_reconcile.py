"""Reconciliation through the real API server into the real OVN Northbound: kubectl apply -> the active
controller replica -> NB ACL rows, status conditions and Events; edits, a policy that does not
compile, deletion through the finalizer, and a namespace deleted with its policies."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from kubekit import acls, apply, conditions, events, get, policy, settled, tenant, zone
from kubeplane import NS, ZonectlCluster, wait, zone_id


def test_examples_are_ready_with_rows_in_nb(zonectl_cluster: ZonectlCluster, examples_applied: str) -> None:
    for name in ("dmz", "web", "db"):
        p = settled(zonectl_cluster, name)
        conds = conditions(p)
        assert [conds[t]["status"] for t in ("Compiled", "Programmed", "Ready")] == ["True", "True", "True"], conds
        rows = acls(zonectl_cluster, f"{NS}/{name}")
        assert len(rows) == p["status"]["ruleCount"] > 0
        assert all(r["ids"]["zonectl.io/policy"] == f"{NS}/{name}" for r in rows)
        programmed = [e for e in events(zonectl_cluster, NS, name) if e["reason"] == "Programmed"]
        assert programmed and programmed[0]["type"] == "Normal" and programmed[0]["involvedObject"]["kind"] == "SecurityZonePolicy"
    assert "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in " ".join(r["match"] for r in acls(zonectl_cluster))


@pytest.fixture
def own(zonectl_cluster: ZonectlCluster, examples_applied: str) -> dict[str, Any]:
    """A zone and an admin policy of this test's own (unique names and id), beside the examples' policies
    (as in a real cluster: deleting the last policy is another story, test_last_policy.py)."""
    sfx = secrets.token_hex(3)
    w = {"zone": f"rc-{sfx}", "peer": f"rcp-{sfx}", "policy": f"rc-{sfx}", "id": zone_id()}
    apply(zonectl_cluster, zone(w["zone"], w["id"], [f"apps-{sfx}"]), zone(w["peer"], zone_id(), [f"peers-{sfx}"]),
          policy(w["policy"], NS, [w["zone"]], [
              {"name": "web", "action": "Allow", "from": [{"zone": w["peer"]}], "ports": [{"protocol": "TCP", "port": 8080}]},
              {"name": "ssh", "action": "Allow", "from": [{"zone": w["peer"]}], "ports": [{"protocol": "TCP", "port": 22}]}]))
    w["key"] = f"{NS}/{w['policy']}"
    assert conditions(settled(zonectl_cluster, w["policy"]))["Ready"]["status"] == "True"
    return w


def test_an_edit_changes_exactly_its_diff(zonectl_cluster: ZonectlCluster, own: dict[str, Any]) -> None:
    others = {r["uuid"] for r in acls(zonectl_cluster) if r["ids"]["zonectl.io/policy"] != own["key"]}
    before = {r["uuid"]: r for r in acls(zonectl_cluster, own["key"])}
    zonectl_cluster.kubectl("-n", NS, "patch", "securityzonepolicy", own["policy"], "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/ingress/1/ports/0/port", "value": 2222}]))
    p = settled(zonectl_cluster, own["policy"])
    assert conditions(p)["Ready"]["status"] == "True"
    after = {r["uuid"]: r for r in acls(zonectl_cluster, own["key"])}
    kept, gone, new = before.keys() & after.keys(), before.keys() - after.keys(), after.keys() - before.keys()
    assert kept and gone and new  # some rows stay as they are, the changed rule's rows are replaced
    assert all("22" in before[u]["match"] for u in gone) and all("2222" in after[u]["match"] for u in new)
    assert all("2222" not in before[u]["match"] for u in kept)
    assert others <= {r["uuid"] for r in acls(zonectl_cluster)}  # no other policy's row touched


def test_a_policy_that_does_not_compile_keeps_its_rows(zonectl_cluster: ZonectlCluster, own: dict[str, Any]) -> None:
    before = sorted(r["uuid"] for r in acls(zonectl_cluster, own["key"]))
    proc = zonectl_cluster.kubectl("-n", NS, "patch", "securityzonepolicy", own["policy"], "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/ingress/0/from/0/zone", "value": "no-such-zone"}]))
    assert proc.returncode == 0  # passes the schema and the authority webhook: only compiling can tell
    p = settled(zonectl_cluster, own["policy"])
    conds = conditions(p)
    assert conds["Compiled"]["status"] == "False" and "unknown zone 'no-such-zone'" in conds["Compiled"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert conds["Programmed"]["reason"] == "PreviousGeneration"
    assert sorted(r["uuid"] for r in acls(zonectl_cluster, own["key"])) == before
    warning = wait("a CompileFailed Event", lambda: [e for e in events(zonectl_cluster, NS, own["policy"])
                                                     if e["reason"] == "CompileFailed"])
    assert warning[0]["type"] == "Warning" and "no-such-zone" in warning[0]["message"]
    printed = zonectl_cluster.kubectl("-n", NS, "get", "securityzonepolicy", own["policy"]).stdout.split("\n")[1].split()
    assert printed[3:5] == [str(len(before)), "False"]  # RULES still enforced, READY False


def test_delete_runs_the_finalizer(zonectl_cluster: ZonectlCluster, own: dict[str, Any]) -> None:
    p = get(zonectl_cluster, "securityzonepolicy", own["policy"], NS)
    assert "zonectl.io/finalizer" in p["metadata"]["finalizers"]
    assert acls(zonectl_cluster, own["key"])
    zonectl_cluster.kubectl("-n", NS, "delete", "securityzonepolicy", own["policy"], "--timeout=60s")
    assert acls(zonectl_cluster, own["key"]) == []
    assert zonectl_cluster.kubectl("-n", NS, "get", "securityzonepolicy", own["policy"], check=False).returncode == 1


def test_deleting_a_namespace_removes_its_policies_rows(zonectl_cluster: ZonectlCluster, examples_applied: str) -> None:
    ns = tenant(zonectl_cluster, "tenant")
    assert acls(zonectl_cluster, f"{ns}/own")
    zonectl_cluster.kubectl("delete", "namespace", ns, "--timeout=90s")  # the namespace controller, then our finalizer
    assert acls(zonectl_cluster, f"{ns}/own") == []


def test_objects_at_rest_are_not_written(zonectl_cluster: ZonectlCluster, own: dict[str, Any]) -> None:
    """Once handled, a zone and a policy see no more writes to the object itself (both kopf operators in
    the controller once fought over the finalizer: ~100 patches a second, per object, forever)."""
    def writes() -> int:
        return sum(1 for e in zonectl_cluster.plane.audit_events()
                   if e["verb"] in ("patch", "update") and not e["objectRef"].get("subresource")
                   and e["objectRef"].get("name") in (own["zone"], own["policy"]))

    before = writes()
    time.sleep(5)
    assert writes() == before
    p = get(zonectl_cluster, "securityzonepolicy", own["policy"], NS)
    z = get(zonectl_cluster, "securityzone", own["zone"])
    assert p["metadata"]["finalizers"] == ["zonectl.io/finalizer"] and z["metadata"]["finalizers"] == ["zonectl.io/finalizer"]
