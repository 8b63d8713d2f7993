"""The admission webhooks through kopf's real webhook server over HTTPS, with AdmissionReview bodies."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from zonectl.operator.config import parse_controller_config
from zonectl.operator.handlers import POD_WEBHOOK, POLICY_WEBHOOK, ZONE_WEBHOOK

from opkit import config_body, decode_patch, make_state, new_controller, pod, policy_bodies, review, run, serve_webhooks, zone_bodies

HINT = "zonectl.io/ipam-hint"
DMZ_HINT = "::2000:0:0:0"  # 0x2000 shifted into bits 64-79


def patched(obj: dict, response: dict) -> dict:
    return jsonpatch.apply_patch(copy.deepcopy(obj), decode_patch(response))


ENGINES = ("kopf-engine", "fast-path")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Every pod-webhook test runs twice: through kopf's admission engine and through the fast path."""
    return request.param


def admit(ctl, tls, *calls, engine: str = "kopf-engine"):
    """Run (webhook, review) pairs against one server; return the responses."""
    async def go():
        async with serve_webhooks(ctl, tls, fast=engine == "fast-path") as post:
            return [await post(w, r) for w, r in calls]
    return run(go())


@pytest.fixture
def ctl(op_config, state):
    return new_controller(op_config, state)


def test_zone_label_gets_hint(ctl, tls_files, engine):
    obj = pod(labels={"securityZone": "dmz", "app": "web"})
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(obj)), engine=engine)
    assert resp["response"]["allowed"] is True
    assert resp["response"]["patchType"] == "JSONPatch"
    assert patched(obj, resp)["metadata"]["annotations"] == {HINT: DMZ_HINT}
    # the uid is echoed, as the API server requires
    assert resp["response"]["uid"]


def test_namespace_allowed_by_selector_gets_hint(ctl, tls_files, engine):
    obj = pod(namespace="edge", labels={"securityZone": "dmz"})
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(obj)), engine=engine)
    assert patched(obj, resp)["metadata"]["annotations"][HINT] == DMZ_HINT


def test_spoofed_hint_is_overridden(ctl, tls_files, engine):
    spoof = pod(labels={"securityZone": "dmz"}, annotations={HINT: "::3000:0:0:0", "keep": "me"})
    no_zone = pod(name="q", labels={"app": "x"}, annotations={HINT: "::3000:0:0:0"})
    r1, r2 = admit(ctl, tls_files, (POD_WEBHOOK, review(spoof)), (POD_WEBHOOK, review(no_zone)), engine=engine)
    assert r1["response"]["allowed"] and r2["response"]["allowed"]
    assert patched(spoof, r1)["metadata"]["annotations"] == {HINT: DMZ_HINT, "keep": "me"}
    assert "replaced" in r1["response"]["warnings"][0]
    assert HINT not in patched(no_zone, r2)["metadata"].get("annotations", {})
    assert "removed" in r2["response"]["warnings"][0]


def test_spoofed_hint_denied_in_deny_mode(state, tls_files, engine):
    config = parse_controller_config(config_body(spoofedHint="deny"))
    ctl = new_controller(config, make_state(config))
    spoof = pod(labels={"securityZone": "dmz"}, annotations={HINT: "::3000:0:0:0"})
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(spoof)), engine=engine)
    assert resp["response"]["allowed"] is False
    assert resp["response"]["status"]["code"] == 403
    assert HINT in resp["response"]["status"]["message"]
    assert "patch" not in resp["response"]


def test_unauthorized_zone_denied_naming_zone_and_namespace(ctl, tls_files, engine):
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(pod(namespace="web-apps", labels={"securityZone": "dmz"}))), engine=engine)
    r = resp["response"]
    assert r["allowed"] is False and r["status"]["code"] == 403
    assert "'dmz'" in r["status"]["message"] and "'web-apps'" in r["status"]["message"]
    assert "patch" not in r


def test_unknown_zone_denied(ctl, tls_files, engine):
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(pod(labels={"securityZone": "dmzz"}))), engine=engine)
    r = resp["response"]
    assert r["allowed"] is False and r["status"]["code"] == 400
    assert "unknown security zone 'dmzz'" in r["status"]["message"]
    assert "db, dmz, web" in r["status"]["message"]


def test_no_label_no_hint(ctl, tls_files, engine):
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(pod(labels={"app": "x"}))), engine=engine)
    assert resp["response"]["allowed"] is True
    assert "patch" not in resp["response"]


def test_dry_run_same_answer_no_side_effects(ctl, tls_files, engine):
    spoof = pod(labels={"securityZone": "dmz"}, annotations={HINT: "::1:0:0:0"})
    counter = ctl.metrics.admission_total.labels("pod", "spoof-replaced")
    dry, = admit(ctl, tls_files, (POD_WEBHOOK, review(spoof, dry_run=True)), engine=engine)
    assert counter._value.get() == 0  # no counting, no audit line for a dry run
    real, = admit(ctl, tls_files, (POD_WEBHOOK, review(spoof)), engine=engine)
    assert counter._value.get() == 1
    assert decode_patch(dry) == decode_patch(real) and dry["response"]["allowed"] is True
    assert patched(spoof, dry)["metadata"]["annotations"][HINT] == DMZ_HINT


def test_update_hint_is_immutable_and_label_change_reported(ctl, tls_files, engine):
    old = pod(labels={"securityZone": "dmz"}, annotations={HINT: DMZ_HINT})
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["securityZone"] = "web"
    new["metadata"]["annotations"][HINT] = "::2100:0:0:0"
    (resp,) = admit(ctl, tls_files, (POD_WEBHOOK, review(new, operation="UPDATE", old=old)), engine=engine)
    r = resp["response"]
    assert r["allowed"] is True
    assert patched(new, resp)["metadata"]["annotations"][HINT] == DMZ_HINT
    assert any("keeps its address" in w for w in r["warnings"])


def test_admission_latency_is_measured(ctl, tls_files, engine):
    admit(ctl, tls_files, *[(POD_WEBHOOK, review(pod(labels={"securityZone": "dmz"})))] * 3, engine=engine)
    text = ctl.metrics.exposition().decode()
    assert 'zonectl_admission_duration_seconds_count{webhook="pod-zone-hint"} 3.0' in text


def _policy(namespace: str, zones: list[str], priority: int = 500) -> dict:
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
            "metadata": {"name": "p", "namespace": namespace, "generation": 1},
            "spec": {"zones": zones, "priority": priority, "defaultAction": {"ingress": "Deny"}, "ingress": [],
                     "egress": []}}


def test_policy_authority(ctl, tls_files):
    tenant_db = _policy("web-apps", ["db"])
    tenant_web = _policy("web-apps", ["web"])
    tenant_low = _policy("web-apps", ["web"], priority=10)
    admin_db = _policy("zonectl-system", ["db"], priority=10)
    r1, r2, r3, r4 = admit(ctl, tls_files, *[(POLICY_WEBHOOK, review(p)) for p in (tenant_db, tenant_web, tenant_low, admin_db)])
    assert r1["response"]["allowed"] is False and r1["response"]["status"]["code"] == 403
    assert "may not place pods in zone 'db'" in r1["response"]["status"]["message"]
    assert r2["response"]["allowed"] is True
    assert r3["response"]["allowed"] is False and "spec.priority" in r3["response"]["status"]["message"]
    assert r4["response"]["allowed"] is True


def test_policy_authority_refuses_what_does_not_parse_but_not_unknown_zones(ctl, tls_files):
    """The CRD keeps unknown fields, so a typo reaches the webhook: refused (400) by name, admin or not. A
    zone the webhook does not know yet is not refused here (it may come in the same apply): compiling says."""
    typo = _policy("zonectl-system", ["dmz"])
    typo["spec"]["ingress"] = [{"action": "Allow", "from": [{"any": True}], "ports": [{"protocol": "TCP", "Port": 22}]}]
    bad_cidr = _policy("zonectl-system", ["dmz"])
    bad_cidr["spec"]["egress"] = [{"action": "Allow", "to": [{"cidr": "::/::"}], "ports": [{"protocol": "Any"}]}]
    both = _policy("web-apps", ["db"])
    both["spec"]["priorty"] = both["spec"].pop("priority")
    later = _policy("zonectl-system", ["not-yet"])
    later["spec"]["ingress"] = [{"action": "Allow", "from": [{"zone": "neither-yet"}], "ports": [{"protocol": "Any"}]}]
    r_typo, r_cidr, r_both, r_later = admit(ctl, tls_files, *[(POLICY_WEBHOOK, review(p)) for p in (typo, bad_cidr, both, later)])
    status = r_typo["response"]["status"]
    assert r_typo["response"]["allowed"] is False and status["code"] == 400
    assert "spec.ingress[0].ports[0]: unknown field(s) Port (did you mean port?)" in status["message"]
    assert r_cidr["response"]["allowed"] is False and "spec.egress[0].to[0].cidr" in r_cidr["response"]["status"]["message"]
    message = r_both["response"]["status"]["message"]
    assert "unknown field(s) priorty (did you mean priority?)" in message and "may not place pods in zone 'db'" in message
    assert r_later["response"]["allowed"] is True


def test_zone_guard(ctl, tls_files):
    zones = {z["metadata"]["name"]: z for z in zone_bodies()}
    for body in policy_bodies():
        ctl.state.set_policy(f"zonectl-system/{body['metadata']['name']}", body)
    in_use = copy.deepcopy(zones["dmz"]) | {"status": {"podCount": 3}}
    unused = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": "lab"},
              "spec": {"id": 0x4000}}
    clash = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": "lab2"},
             "spec": {"id": 0x2000}}
    renumber = copy.deepcopy(in_use)
    renumber["spec"]["id"] = 0x2200
    r_del_used, r_del_unused, r_clash, r_new, r_renum = admit(
        ctl, tls_files,
        (ZONE_WEBHOOK, review(None, old=in_use, operation="DELETE", kind="SecurityZone")),
        (ZONE_WEBHOOK, review(None, old=unused, operation="DELETE", kind="SecurityZone")),
        (ZONE_WEBHOOK, review(clash)),
        (ZONE_WEBHOOK, review(unused)),
        (ZONE_WEBHOOK, review(renumber, old=in_use, operation="UPDATE")),
    )
    msg = r_del_used["response"]["status"]["message"]
    assert r_del_used["response"]["allowed"] is False and "3 pods" in msg and "zonectl-system/dmz" in msg
    assert r_del_unused["response"]["allowed"] is True
    assert r_clash["response"]["allowed"] is False and "both use id 0x2000" in r_clash["response"]["status"]["message"]
    assert r_new["response"]["allowed"] is True
    assert r_renum["response"]["allowed"] is False and "changing the id" in r_renum["response"]["status"]["message"]


def test_fast_path_answers_exactly_like_kopf_engine(ctl, tls_files):
    """The fast path is an optimisation only: for every kind of pod review, the same decision and result."""
    with_hint = pod(labels={"securityZone": "web"}, annotations={HINT: "::2100:0:0:0"})
    relabelled = copy.deepcopy(with_hint)
    relabelled["metadata"]["labels"]["securityZone"] = "db"
    dropped = copy.deepcopy(with_hint)
    del dropped["metadata"]["annotations"][HINT]
    cases = [
        review(pod(labels={"securityZone": "dmz"})),
        review(pod(labels={"securityZone": "dmz"}, annotations={"a": "b"})),
        review(pod(labels={"securityZone": "dmz"}, annotations={HINT: "::1"})),
        review(pod(labels={"securityZone": "web"}, annotations={HINT: "::2100:0:0:0"})),
        review(pod(labels={}, annotations={HINT: "::1"})),
        review(pod()),
        review(pod(namespace="db", labels={"securityZone": "dmz"})),
        review(pod(namespace="brand-new", labels={"securityZone": "dmz"})),
        review(pod(namespace="brand-new", labels={"securityZone": "db"})),
        review(pod(labels={"securityZone": "nope"})),
        review(pod(labels={"securityZone": "dmz"}), dry_run=True),
        review(relabelled, operation="UPDATE", old=with_hint),
        review(dropped, operation="UPDATE", old=with_hint),
    ]
    slow = admit(ctl, tls_files, *[(POD_WEBHOOK, r) for r in cases], engine="kopf-engine")
    fast = admit(ctl, tls_files, *[(POD_WEBHOOK, r) for r in cases], engine="fast-path")
    for r, a, b in zip(cases, slow, fast, strict=True):
        a, b = a["response"], b["response"]
        obj = r["request"]["object"]
        assert (a["allowed"], a.get("status"), a.get("warnings")) == (b["allowed"], b.get("status"), b.get("warnings")), obj
        assert patched(obj, {"response": a}) == patched(obj, {"response": b}), obj
        assert a["uid"] == b["uid"] == r["request"]["uid"]
    assert [x["response"]["allowed"] for x in fast] == [True] * 6 + [False] * 4 + [True] * 3


def test_metadata_only_updates_are_never_blocked(ctl, tls_files):
    """The controller's own finalizer/annotation patches must pass, even for a policy that lost its
    authority or a zone in conflict; otherwise such objects could never be deleted."""
    revoked = _policy("web-apps", ["db"])
    with_finalizer = copy.deepcopy(revoked)
    with_finalizer["metadata"]["finalizers"] = []
    clash = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": "lab2"},
             "spec": {"id": 0x2000}}
    clash_annotated = copy.deepcopy(clash)
    clash_annotated["metadata"]["annotations"] = {"zonectl.io/last-handled-configuration": "{}"}
    spec_change = copy.deepcopy(revoked)
    spec_change["spec"]["priority"] = 600
    r1, r2, r3 = admit(ctl, tls_files,
                       (POLICY_WEBHOOK, review(with_finalizer, operation="UPDATE", old=revoked)),
                       (ZONE_WEBHOOK, review(clash_annotated, operation="UPDATE", old=clash)),
                       (POLICY_WEBHOOK, review(spec_change, operation="UPDATE", old=revoked)))
    assert r1["response"]["allowed"] is True and r2["response"]["allowed"] is True
    assert r3["response"]["allowed"] is False  # a spec change is judged again
