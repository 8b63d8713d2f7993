"""Admission decisions as pure functions: pod in -> hint annotation / denial out.

The kopf handlers in ``handlers.py`` only read the request and apply the decision, so every rule here is
tested without a server, and the per-request path is a couple of dict lookups in the precomputed
``HintTable`` (see ``zonestate.py``).

Rules (pods):
* label ``securityZone`` (key configurable) absent -> zone 0, no hint; a hint annotation the user put
  there anyway is removed (``spoofedHint: replace``) or the pod refused (``spoofedHint: deny``);
* label names an unknown zone -> refused (400), naming the known zones;
* zone not allowed for the namespace -> refused (403), naming zone and namespace;
* otherwise the hint is set; a user-supplied different hint is replaced (or refused);
* on UPDATE the hint is immutable (restored or refused), and a zone label change is allowed but
  reported: a running pod keeps the address (and so the zone) it was created with.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from .config import OperatorSettings
from .review import API_VERSION
from .zonestate import HintTable

Action = Literal["keep", "set", "remove"]


@dataclass(frozen=True)
class PodDecision:
    """What to answer: allowed or not, what to do with the hint annotation, and why (for metrics)."""

    outcome: str  # metric label: hinted, unchanged, no-zone, spoof-removed, spoof-replaced, restored, denied-*
    allowed: bool = True
    action: Action = "keep"
    value: str | None = None
    message: str = ""
    code: int = 200
    warnings: tuple[str, ...] = ()
    zone: str | None = None


def _deny(outcome: str, message: str, code: int, zone: str | None = None) -> PodDecision:
    return PodDecision(outcome, allowed=False, message=message, code=code, zone=zone)


def decide_create(
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    table: HintTable,
    settings: OperatorSettings,
) -> PodDecision:
    """The decision for a new pod (AdmissionReview operation CREATE)."""
    key = settings.hint_annotation
    zone = labels.get(settings.label_key)
    supplied = annotations.get(key)
    if not zone:
        if supplied is None:
            return PodDecision("no-zone")
        if settings.spoofed_hint == "deny":
            return _deny("denied-spoof", f"annotation {key} is set by zonectl only, and this pod has no "
                                         f"{settings.label_key} label", 403)
        return PodDecision("spoof-removed", action="remove",
                           warnings=(f"zonectl removed annotation {key}: it is set by zonectl only "
                                     f"(this pod has no {settings.label_key} label, so no zone)",))
    hint = table.hints.get(zone)
    if hint is None:
        known = ", ".join(sorted(table.hints)) or "none"
        return _deny("denied-unknown", f"unknown security zone {zone!r} in label {settings.label_key} "
                                       f"(known zones: {known})", 400, zone)
    row = table.rows.get(namespace)
    if row is None:
        row = table.explicit.get(namespace)
        if (row is None or zone not in row) and zone in table.selector_zones:
            return _deny("denied-retry", f"labels of namespace {namespace!r} are not known to zonectl yet; "
                                         "retry in a moment", 503, zone)
    if row is None or zone not in row:
        return _deny("denied-namespace", f"security zone {zone!r} is not allowed in namespace {namespace!r} "
                                         f"(see SecurityZone {zone}: spec.namespaces / spec.namespaceSelector)",
                     403, zone)
    if supplied == hint:
        return PodDecision("unchanged", zone=zone)
    if supplied is None:
        return PodDecision("hinted", action="set", value=hint, zone=zone)
    if settings.spoofed_hint == "deny":
        return _deny("denied-spoof", f"annotation {key} is set by zonectl only (got {supplied!r}, zone "
                                     f"{zone!r} needs {hint!r})", 403, zone)
    return PodDecision("spoof-replaced", action="set", value=hint, zone=zone,
                       warnings=(f"zonectl replaced annotation {key}={supplied!r} with {hint!r} (zone {zone})",))


def decide_update(
    old_labels: Mapping[str, str],
    old_annotations: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    settings: OperatorSettings,
) -> PodDecision:
    """The decision for a changed pod: the hint is immutable, a zone label change is only reported."""
    key = settings.hint_annotation
    warnings: list[str] = []
    old_zone, zone = old_labels.get(settings.label_key), labels.get(settings.label_key)
    if old_zone != zone:
        warnings.append(f"label {settings.label_key} changed from {old_zone!r} to {zone!r}, but a running pod keeps "
                        f"its address and so its zone ({old_zone or 'none'}); recreate the pod to move it")
    before, after = old_annotations.get(key), annotations.get(key)
    if before == after:
        return PodDecision("label-changed" if warnings else "unchanged", warnings=tuple(warnings), zone=old_zone)
    if settings.spoofed_hint == "deny":
        return _deny("denied-spoof", f"annotation {key} is immutable and set by zonectl only", 403, old_zone)
    warnings.append(f"zonectl restored annotation {key}: it is immutable and set by zonectl only")
    if before is None:
        return PodDecision("restored", action="remove", warnings=tuple(warnings), zone=old_zone)
    return PodDecision("restored", action="set", value=before, warnings=tuple(warnings), zone=old_zone)


def json_patch(decision: PodDecision, key: str, annotations: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """The RFC 6902 operations that apply ``decision`` to a pod whose annotations are ``annotations``."""
    path = "/metadata/annotations"
    if decision.action == "set":
        if annotations is None:
            return [{"op": "add", "path": path, "value": {key: decision.value}}]
        return [{"op": "add", "path": f"{path}/{key.replace('~', '~0').replace('/', '~1')}", "value": decision.value}]
    if decision.action == "remove" and annotations is not None and key in annotations:
        if len(annotations) == 1:  # no empty map left behind (kopf's engine does the same)
            return [{"op": "remove", "path": path}]
        return [{"op": "remove", "path": f"{path}/{key.replace('~', '~0').replace('/', '~1')}"}]
    return []


_ENCODED: dict[str, str] = {}


def encode_patch(ops: list[dict[str, Any]]) -> str:
    """base64(JSON) of the operations; the handful of distinct patches (one per zone) are encoded once."""
    text = json.dumps(ops)
    encoded = _ENCODED.get(text)
    if encoded is None:
        encoded = base64.b64encode(text.encode()).decode("ascii")
        if len(_ENCODED) < 4096:  # bounded: values are hints of known zones, or restored user values
            _ENCODED[text] = encoded
    return encoded


def review_response(uid: str, decision: PodDecision, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """An AdmissionReview response, shaped exactly as kopf's admission engine shapes it."""
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    if decision.allowed and ops:
        response["patch"] = encode_patch(ops)
        response["patchType"] = "JSONPatch"
    if not decision.allowed:
        response["status"] = {"message": decision.message, "code": decision.code}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
