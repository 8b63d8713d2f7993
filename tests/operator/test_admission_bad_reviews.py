"""Malformed AdmissionReviews through kopf's real webhook server over HTTPS: refused, never a 500 or a pass.

Every review goes to two servers of one controller: the pod webhook on kopf's admission engine and on
the fast path (the controller's default). Both must give the same answer, and each answer must be:
* an HTTP 400 (404 for an unknown webhook path) with a Status body naming the field, when the review
  has no usable envelope (not JSON, not an admission.k8s.io/v1 AdmissionReview, no request.uid), or
* a denial (allowed: false, code 400) for the request's uid, whose one-line message names the field.

The table (CASES) is this layer's part of the bad-input suite (tests/unit/test_bad_inputs.py runs the
command line; an AdmissionReview needs the webhook server, so its table lives here). The property test
mutates valid reviews at random and checks the invariants: never a 500, a response uid equal to the
request's, never a zone-labelled pod allowed without its hint, the two paths alike.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zonectl.operator.config import parse_controller_config
from zonectl.operator.handlers import POD_WEBHOOK, POLICY_WEBHOOK, ZONE_WEBHOOK

from opkit import BackgroundWebhooks, config_body, decode_patch, make_state, new_controller, pod, review

HINT = "zonectl.io/ipam-hint"
DEL: Any = object()  # remove the key
RAW = "<raw>"  # an edit at this path replaces the whole request body by its bytes


def _policy() -> dict[str, Any]:
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
            "metadata": {"name": "p", "namespace": "web-apps", "generation": 1},
            "spec": {"zones": ["web"], "priority": 500, "defaultAction": {"ingress": "Deny"}, "ingress": [],
                     "egress": []}}


def _zone(name: str = "lab", zone_id: int = 0x4000) -> dict[str, Any]:
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": name},
            "spec": {"id": zone_id}}


def _pod_update() -> dict[str, Any]:
    old = pod(labels={"securityZone": "dmz"}, annotations={HINT: "::2000:0:0:0"})
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["app"] = "web"
    return review(new, operation="UPDATE", old=old)


BASES = {  # name -> (webhook, a valid review of it)
    "pod": (POD_WEBHOOK, lambda: review(pod(labels={"securityZone": "dmz"}))),
    "pod-update": (POD_WEBHOOK, _pod_update),
    "policy": (POLICY_WEBHOOK, lambda: review(_policy())),
    "zone": (ZONE_WEBHOOK, lambda: review(_zone())),
    "zone-delete": (ZONE_WEBHOOK, lambda: review(None, old=_zone() | {"status": {"podCount": 0}}, operation="DELETE",
                                                 kind="SecurityZone")),
}


@dataclass(frozen=True)
class Case:
    id: str
    base: str
    edits: tuple[tuple[str, Any], ...]
    field: str  # what the one-line message must name
    answer: int | str = "deny"  # "deny" (HTTP 200, allowed false) or the HTTP status
    webhook: str | None = None  # another path than the base's webhook


def D(id: str, path: str, value: Any, field: str | None = None, base: str = "pod") -> Case:
    """A review whose envelope is fine but whose request is not: a denial naming ``field`` (default ``path``)."""
    return Case(id, base, ((path, value),), field or path)


def H(id: str, path: str, value: Any, field: str | None = None, base: str = "pod") -> Case:
    """A review (or body) without a usable envelope: HTTP 400 with a Status naming ``field``."""
    return Case(id, base, ((path, value),), field or path, 400)


BASE_JSON = json.dumps(BASES["pod"][1]())
CASES = [
    # --- the body and the envelope: HTTP 400 -----------------------------------------------------
    H("body-null", RAW, b"null", "must be an AdmissionReview object, not null"),
    H("body-list", RAW, b"[]", "not a list"),
    H("body-string", RAW, b'"AdmissionReview"', "not a string"),
    H("body-number", RAW, b"5", "not a number"),
    H("body-empty", RAW, b"", "request body: not JSON"),
    H("body-truncated", RAW, BASE_JSON[:40].encode(), "request body: not JSON"),
    H("body-trailing-garbage", RAW, BASE_JSON.encode() + b"}", "request body: not JSON"),
    H("body-not-utf8", RAW, BASE_JSON.replace('"dmz"', '"dm\\u00ff"').encode().replace(b"\\u00ff", b"\xff"),
      "request body: not UTF-8"),
    H("body-utf16", RAW, BASE_JSON.encode("utf-16"), "request body: not UTF-8"),
    H("body-nan", RAW, BASE_JSON.replace('"dryRun": false', '"dryRun": NaN').encode(), "NaN is not JSON"),
    H("body-infinity", RAW, BASE_JSON.replace('"dryRun": false', '"dryRun": -Infinity').encode(), "Infinity"),
    H("body-deeply-nested", RAW, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    H("apiVersion-missing", "apiVersion", DEL),
    H("apiVersion-v1beta1", "apiVersion", "admission.k8s.io/v1beta1"),
    H("apiVersion-number", "apiVersion", 1),
    H("kind-missing", "kind", DEL),
    H("kind-pod", "kind", "Pod"),
    H("request-missing", "request", DEL),
    H("request-null", "request", None),
    H("request-string", "request", "x"),
    H("request-list", "request", []),
    H("uid-missing", "request.uid", DEL),
    H("uid-number", "request.uid", 5),
    H("uid-object", "request.uid", {}),
    H("uid-empty", "request.uid", ""),
    H("uid-newline", "request.uid", "a\nb"),
    H("uid-too-long", "request.uid", "u" * 200),
    Case("path-unknown", "pod", (), "not /nope", 404, webhook="nope"),
    Case("path-empty", "pod", (), "zonectl serves", 404, webhook=""),
    Case("path-control-character", "pod", (), "not /x\\x00", 404, webhook="x%00"),
    # --- the request: a denial for its uid -------------------------------------------------------
    D("operation-missing", "request.operation", DEL),
    D("operation-null", "request.operation", None),
    D("operation-lowercase", "request.operation", "create"),
    D("operation-list", "request.operation", ["CREATE"]),
    D("operation-delete-on-pods", "request.operation", "DELETE"),
    D("operation-connect", "request.operation", "CONNECT"),
    D("resource-missing", "request.resource", DEL),
    D("resource-null", "request.resource", None),
    D("resource-string", "request.resource", "pods"),
    D("resource-of-another-webhook", "request.resource",
      {"group": "zonectl.io", "version": "v1alpha1", "resource": "securityzones"}),
    D("resource-group-missing", "request.resource", {"version": "v1", "resource": "pods"}),
    D("resource-version-v2", "request.resource.version", "v2", "request.resource"),
    D("resource-plural-number", "request.resource.resource", 1, "request.resource"),
    D("kind-gvk-missing", "request.kind", DEL),
    D("kind-gvk-secret", "request.kind.kind", "Secret", "request.kind"),
    D("subresource-status", "request.subResource", "status"),
    D("subresource-number", "request.subResource", 5, "request.subResource"),
    D("userinfo-missing", "request.userInfo", DEL),
    D("userinfo-string", "request.userInfo", "alice"),
    D("userinfo-username-number", "request.userInfo.username", 7),
    D("userinfo-groups-string", "request.userInfo.groups", "system:masters"),
    D("userinfo-extra-not-lists", "request.userInfo.extra", {"scopes": "all"}),
    D("dryrun-string", "request.dryRun", "false"),
    D("dryrun-number", "request.dryRun", 0),
    D("request-name-number", "request.name", 5),
    D("request-namespace-list", "request.namespace", ["dmz-apps"]),
    D("options-string", "request.options", "x"),
    D("object-missing", "request.object", DEL),
    D("object-null", "request.object", None),
    D("object-string", "request.object", "pod"),
    D("object-list", "request.object", []),
    D("object-apiversion-v2", "request.object.apiVersion", "v2"),
    D("object-kind-secret", "request.object.kind", "Secret"),
    D("object-kind-missing", "request.object.kind", DEL),
    D("metadata-missing", "request.object.metadata", DEL),
    D("metadata-null", "request.object.metadata", None),
    D("metadata-string", "request.object.metadata", "x"),
    D("metadata-name-object", "request.object.metadata.name", {}),
    D("metadata-generatename-number", "request.object.metadata.generateName", 1),
    D("metadata-uid-list", "request.object.metadata.uid", []),
    D("metadata-namespace-missing", "request.object.metadata.namespace", DEL),
    D("metadata-namespace-empty", "request.object.metadata.namespace", ""),
    D("metadata-namespace-number", "request.object.metadata.namespace", 3),
    D("metadata-namespace-not-the-requests", "request.object.metadata.namespace", "db"),
    D("labels-string", "request.object.metadata.labels", "securityZone=dmz"),
    D("labels-list", "request.object.metadata.labels", ["securityZone"]),
    D("labels-zone-number", "request.object.metadata.labels.securityZone", 8192),
    D("labels-zone-null", "request.object.metadata.labels.securityZone", None),
    D("labels-zone-list", "request.object.metadata.labels.securityZone", ["dmz"]),
    D("labels-zone-object", "request.object.metadata.labels.securityZone", {"name": "dmz"}),
    D("labels-zone-bool", "request.object.metadata.labels.securityZone", True),
    D("annotations-string", "request.object.metadata.annotations", "x"),
    D("annotations-hint-object", f"request.object.metadata.annotations[{HINT}]", {"v": 1},
      "request.object.metadata.annotations"),
    D("spec-string", "request.object.spec", "x"),
    D("status-list", "request.object.status", []),
    D("update-oldobject-missing", "request.oldObject", DEL, base="pod-update"),
    D("update-oldobject-string", "request.oldObject", "x", base="pod-update"),
    D("update-old-labels-string", "request.oldObject.metadata.labels", "x", base="pod-update"),
    D("update-old-hint-number", f"request.oldObject.metadata.annotations[{HINT}]", 1,
      "request.oldObject.metadata.annotations", base="pod-update"),
    D("update-old-namespace-other", "request.oldObject.metadata.namespace", "db", base="pod-update"),
    D("update-object-missing", "request.object", DEL, base="pod-update"),
    D("policy-operation-delete", "request.operation", "DELETE", base="policy"),
    D("policy-resource-pods", "request.resource", {"group": "", "version": "v1", "resource": "pods"},
      base="policy"),
    D("policy-namespace-missing", "request.object.metadata.namespace", DEL, base="policy"),
    D("policy-spec-string", "request.object.spec", "x", base="policy"),
    D("policy-labels-list", "request.object.metadata.labels", [], base="policy"),
    D("zone-namespaced", "request.object.metadata.namespace", "default", base="zone"),
    D("zone-spec-list", "request.object.spec", [], base="zone"),
    D("zone-operation-connect", "request.operation", "CONNECT", base="zone"),
    D("zone-kind-policy", "request.object.kind", "SecurityZonePolicy", base="zone"),
    D("zone-delete-old-missing", "request.oldObject", DEL, base="zone-delete"),
    D("zone-delete-podcount-string", "request.oldObject.status.podCount", "3", base="zone-delete"),
    D("zone-delete-podcount-negative", "request.oldObject.status.podCount", -1, base="zone-delete"),
    D("zone-delete-podcount-float", "request.oldObject.status.podCount", 1.5, base="zone-delete"),
    D("zone-delete-status-string", "request.oldObject.status", "x", base="zone-delete"),
    D("zone-delete-object-string", "request.object", "x", base="zone-delete"),
]

KEY = re.compile(r"\[([^\]]*)\]|([^.\[]+)")


def keys(path: str) -> list[str]:
    """``a.b[c.d/e]`` -> ["a", "b", "c.d/e"] (brackets for keys holding dots)."""
    return [m[1] if m[1] is not None else m[2] for m in KEY.finditer(path)]


def edited(doc: dict[str, Any], edits: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for path, value in edits:
        *parents, last = keys(path)
        node = doc
        for k in parents:
            node = node.setdefault(k, {})
        if value is DEL:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def body_of(case: Case) -> tuple[bytes, Any]:
    """The bytes to send and the uid the answer must carry (None when the case has none)."""
    if case.edits and case.edits[0][0] == RAW:
        return case.edits[0][1], None
    doc = edited(BASES[case.base][1](), case.edits)
    req = doc.get("request")
    uid = req.get("uid") if isinstance(req, dict) else None
    return json.dumps(doc).encode(), uid


@pytest.fixture(scope="module")
def webhooks(tls_files) -> Iterator[BackgroundWebhooks]:
    config = parse_controller_config(config_body())
    with BackgroundWebhooks(new_controller(config, make_state(config)), tls_files) as servers:
        yield servers


def both(webhooks: BackgroundWebhooks, webhook: str, raw: bytes) -> tuple[int, Any, str]:
    """The answer of kopf's engine, asserted equal to the fast path's."""
    slow, fast = (webhooks.post(engine, webhook, raw) for engine in BackgroundWebhooks.ENGINES)
    assert slow[0] != 500 and fast[0] != 500, (slow, fast)
    assert slow[:2] == fast[:2], f"kopf's engine and the fast path differ:\n{slow}\n{fast}"
    return slow


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_malformed_review_is_refused_naming_the_field(webhooks: BackgroundWebhooks, case: Case) -> None:
    raw, uid = body_of(case)
    status, data, text = both(webhooks, case.webhook if case.webhook is not None else BASES[case.base][0], raw)
    if case.answer == "deny":
        assert status == 200, text
        r = data["response"]
        assert r["uid"] == uid
        assert r["allowed"] is False and "patch" not in r
        assert r["status"]["code"] == 400
        message = r["status"]["message"]
        assert message.startswith("malformed AdmissionReview: ")
    else:
        assert status == case.answer, text
        assert data["kind"] == "Status" and data["status"] == "Failure" and data["code"] == case.answer
        message = data["message"]
    assert case.field in message, message
    assert "\n" not in message and len(message) < 600


def test_enough_cases_and_unique_ids() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_base_review_is_answered(webhooks: BackgroundWebhooks) -> None:
    """The bases are valid: the table's refusals come from its edits alone."""
    for name, (webhook, make) in BASES.items():
        status, data, text = both(webhooks, webhook, json.dumps(make()).encode())
        assert status == 200 and data["response"]["allowed"] is True, (name, text)


def test_malformed_reviews_are_counted(webhooks: BackgroundWebhooks) -> None:
    counter = webhooks.ctl.metrics.admission_total.labels("pod", "malformed")
    before = counter._value.get()
    raw, _ = body_of(D("x", "request.operation", DEL))
    both(webhooks, POD_WEBHOOK, raw)
    assert counter._value.get() == before + 2  # once per server


def test_renumbering_a_zone_whose_old_id_is_not_a_number_is_denied(webhooks: BackgroundWebhooks) -> None:
    """spec.id of the old object is not checked by the envelope checks: the guard must not crash on it."""
    old = _zone("lab", 0x4000) | {"status": {"podCount": 2}}
    old["spec"]["id"] = "0x4000"
    status, data, text = both(webhooks, ZONE_WEBHOOK, json.dumps(review(_zone("lab", 0x4100), operation="UPDATE",
                                                                         old=old)).encode())
    assert status == 200 and data["response"]["allowed"] is False, text
    assert "changing the id" in data["response"]["status"]["message"]


# ----- generated: random mutations of valid reviews -----------------------------------------------

def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``doc`` (mapping keys and list indexes), containers included."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*prefix, i))


WORDS = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "dmz", "db", "web", "nope", "pods", "Pod", "v1",
                         "", "securityZone", HINT, "::2000:0:0:0", "dmz-apps", "web-apps", "zonectl-system",
                         "admission.k8s.io/v1", "AdmissionReview", "status", "SecurityZone", "zonectl.io"])
LEAVES = st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=8) | WORDS
VALUES = st.recursive(LEAVES, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4) | WORDS, c,
                                                                                     max_size=3), max_leaves=6)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(BASES)))
    webhook, make = BASES[name]
    doc = make()
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(doc))))
        if not where:
            doc = draw(VALUES)
            break
        *parents, last = where
        node = doc
        for k in parents:
            node = node[k]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete" and isinstance(node, dict):
            del node[last]
        elif action == "add" and isinstance(node[last], dict):
            node[last][draw(st.text(max_size=4) | WORDS)] = draw(VALUES)
        else:
            node[last] = draw(VALUES)
        if not isinstance(doc, dict):
            break
    return name, webhook, doc


def zone_label(obj: Any) -> str | None:
    try:
        value = obj["metadata"]["labels"]["securityZone"]
    except (KeyError, TypeError, IndexError):
        return None
    return value if isinstance(value, str) and value else None


def hint_after(obj: dict[str, Any], response: dict[str, Any]) -> Any:
    after = jsonpatch.apply_patch(copy.deepcopy(obj), decode_patch({"response": response}))
    return ((after.get("metadata") or {}).get("annotations") or {}).get(HINT)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(mutated())
def test_mutated_reviews_never_fail_open(webhooks: BackgroundWebhooks, sample: tuple[str, str, Any]) -> None:
    name, webhook, doc = sample
    status, data, text = both(webhooks, webhook, json.dumps(doc).encode())
    assert status in (200, 400), text
    req = doc.get("request") if isinstance(doc, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    if status == 400:
        assert data["kind"] == "Status" and "\n" not in data["message"]
        return
    r = data["response"]
    assert r["uid"] == uid and isinstance(uid, str)
    if not r["allowed"]:
        assert "patch" not in r and "\n" not in r["status"]["message"]
        return
    if webhook != POD_WEBHOOK:
        return
    obj, table = req["object"], webhooks.ctl.state.table
    if req["operation"] == "CREATE" and zone_label(obj) is not None:
        assert hint_after(obj, r) == table.hints[zone_label(obj)], (doc, r)  # a labelled pod is hinted
    elif req["operation"] == "UPDATE":
        old_hint = ((req["oldObject"]["metadata"].get("annotations")) or {}).get(HINT)
        assert hint_after(obj, r) == old_hint, (doc, r)  # the hint never changes after creation
    else:
        assert req["operation"] == "CREATE" and hint_after(obj, r) is None, (doc, r)  # no zone, no hint
