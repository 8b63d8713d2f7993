"""The ValidatingAdmissionPolicy zonectl-ipam-hint (manifests/admission-policy.yaml), its CEL evaluated with
cel-python (the interpreter tests/unit/test_crds.py uses for the CRDs' rules) against AdmissionRequests the
API server would build: variables in order, then every validation, as the API server does.

Its schema and its consistency with the pod webhook and the config are checked in
tests/operator/test_manifests.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_crds import _need_cel, _program, celpy  # one CEL interpreter set-up for CRDs and policies

ROOT = Path(__file__).resolve().parents[2]
HINT = "zonectl.io/ipam-hint"


def policy() -> dict:
    docs = list(yaml.safe_load_all((ROOT / "manifests" / "admission-policy.yaml").read_text()))
    (vap,) = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    return vap


def pod(ns: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": "p", "namespace": ns}
    if annotations is not None:
        meta["annotations"] = annotations
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def evaluate(obj: dict, old: dict | None = None, sub_resource: str = "") -> list[str]:
    """The messages of the failed validations (empty: admitted). An evaluation error counts as a failure
    (failurePolicy Fail), reported with the expression."""
    _need_cel()
    spec = policy()["spec"]
    request = {"operation": "UPDATE" if old is not None else "CREATE", "namespace": obj["metadata"]["namespace"],
               "subResource": sub_resource, "name": obj["metadata"]["name"],
               "resource": {"group": "", "version": "v1", "resource": "pods"}}
    act: dict[str, Any] = {"object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(old),
                           "request": celpy.json_to_cel(request)}
    variables: dict = {}
    for var in spec.get("variables", ()):
        act["variables"] = celpy.celtypes.MapType(variables)
        variables[celpy.celtypes.StringType(var["name"])] = _program(var["expression"]).evaluate(act)
    act["variables"] = celpy.celtypes.MapType(variables)
    failed = []
    for v in spec["validations"]:
        result = _program(v["expression"]).evaluate(act)
        if not isinstance(result, celpy.celtypes.BoolType):
            failed.append(f"error in {v['expression']!r}: {result!r}")
        elif not result:
            failed.append(str(_program(v["messageExpression"]).evaluate(act)) if "messageExpression" in v
                          else v["message"])
    return failed


EXCLUDED = ["kube-system", "kube-node-lease", "ovn-kubernetes", "zonectl-system"]


@pytest.mark.parametrize("ns", EXCLUDED)
def test_no_hint_on_pods_outside_the_webhook(ns: str) -> None:
    assert evaluate(pod(ns)) == []                                   # no annotations at all
    assert evaluate(pod(ns, {"other": "x"})) == []
    (msg,) = evaluate(pod(ns, {HINT: "::2000:0:0:0"}, {"securityZone": "dmz"}))
    assert msg.startswith(f"annotation {HINT} is set by zonectl only, and namespace {ns} is outside")
    # UPDATE: adding or changing it is refused; keeping or removing a pre-existing one is not, so such a
    # pod can still get its finalizers removed and be deleted
    plain, hinted = pod(ns, {"a": "b"}), pod(ns, {HINT: "::2000:0:0:0", "a": "b"})
    assert evaluate(hinted, old=plain) != []
    assert evaluate(pod(ns, {HINT: "::3000:0:0:0"}), old=hinted) != []
    assert evaluate(hinted, old=copy.deepcopy(hinted)) == []
    assert evaluate(plain, old=hinted) == []
    assert evaluate(pod(ns), old=hinted) == []                       # annotations gone altogether


@pytest.mark.parametrize("ns", ["default", "dmz-apps", "kube-public"])
def test_the_webhook_keeps_its_namespaces(ns: str) -> None:
    """Where the pod webhook runs, it sets and restores the hint: the policy must not get in its way."""
    hinted = pod(ns, {HINT: "::2000:0:0:0"}, {"securityZone": "dmz"})
    assert evaluate(hinted) == []                                    # CREATE after the webhook set it
    assert evaluate(pod(ns, {HINT: "::3000:0:0:0"}), old=hinted) == []   # UPDATE: the webhook restores it
    assert evaluate(pod(ns), old=hinted) == []


@pytest.mark.parametrize("ns", ["default", "kube-system"])
def test_status_subresource_cannot_touch_the_hint(ns: str) -> None:
    hinted, plain = pod(ns, {HINT: "::2000:0:0:0"}), pod(ns, {"a": "b"})
    msg = f"annotation {HINT} cannot be added, changed or removed through pods/status"
    assert msg in evaluate(pod(ns, {HINT: "::3000:0:0:0"}), old=hinted, sub_resource="status")
    assert msg in evaluate(plain, old=hinted, sub_resource="status")
    assert msg in evaluate(hinted, old=plain, sub_resource="status")
    assert evaluate(pod(ns, {HINT: "::2000:0:0:0", "x": "y"}), old=hinted, sub_resource="status") == []
    assert evaluate(pod(ns, {"x": "y"}), old=plain, sub_resource="status") == []
    assert evaluate(pod(ns), old=pod(ns), sub_resource="status") == []


def test_no_expression_errors_on_odd_objects() -> None:
    """Absent, empty and hinted annotation maps, on both sides: no expression ever fails to evaluate."""
    shapes = [None, {}, {"a": "b"}, {HINT: ""}, {HINT: "::2000:0:0:0"}]
    for ns in ("default", "kube-system"):
        for new in shapes:
            cases = [(None, "")] + [(pod(ns, old), sub) for old in shapes for sub in ("", "status")]
            for old, sub in cases:
                got = evaluate(pod(ns, new), old=old, sub_resource=sub)
                assert not any(m.startswith("error in") for m in got), (ns, new, old, sub, got)
