"""AdmissionReview checks: a webhook decides only on a review of the shape the API server sends.

Why before any decision: kopf's admission engine and zonectl's pod fast path read the review with
``.get`` chains that assume its shape. A malformed review used to end as an HTTP 500, or worse, as
``allowed`` without the hint: a missing or unknown ``operation`` (or a wrong ``resource``, or an
unknown webhook path) matched no handler, and kopf allows what no handler judged. The webhook server
(webhook.py) runs ``check_review`` on every review first, so both paths see only well-formed reviews
and answer alike.

Two kinds of answer, chosen by what kube-apiserver does with them (failurePolicy Fail everywhere):

* the envelope is wrong (not JSON, not an ``admission.k8s.io/v1`` AdmissionReview, no ``request.uid``,
  an unknown webhook path): no response the API server would accept can be built, so the answer is
  HTTP 400 (404 for an unknown path) with a ``Status`` body, whose message the API server keeps in its
  "failed calling webhook" error. It fails the call and, with failurePolicy Fail, refuses the object.
* the envelope is right but the request is not (operation, resource, object, metadata, labels ...): a
  denial for that uid (``allowed: false``, code 400); the user reads ``admission webhook "..." denied
  the request: malformed AdmissionReview: request.object.metadata.labels.app: ...``.

Unknown fields are not errors here, unlike in zonectl's own documents: the AdmissionReview is the API
server's, versioned by its apiVersion, and a field a newer API server adds must not refuse every pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..core.errors import Collector, Problem, ValidationError
from ..core.fields import short as _short
from ..core.fields import type_name

API_VERSION = "admission.k8s.io/v1"
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: tuple[Operation, ...] = ("CREATE", "UPDATE", "DELETE", "CONNECT")
MAX_UID = 128  # the API server sends a UUID (36 characters)

# Webhook ids: the URL path of each webhook (https://<service>/<id>), as in manifests/webhooks/.
POD_WEBHOOK = "pod-zone-hint"
POLICY_WEBHOOK = "policy-authority"
ZONE_WEBHOOK = "zone-guard"


@dataclass(frozen=True)
class Endpoint:
    """What one webhook judges: the resource and the operations its webhook configuration sends."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    operations: tuple[Operation, ...]
    label: str  # the ``webhook`` label of zonectl_admission_reviews_total

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


ENDPOINTS: Mapping[str, Endpoint] = {
    POD_WEBHOOK: Endpoint("", "v1", "pods", "Pod", True, ("CREATE", "UPDATE"), "pod"),
    POLICY_WEBHOOK: Endpoint("zonectl.io", "v1alpha1", "securityzonepolicies", "SecurityZonePolicy", True,
                             ("CREATE", "UPDATE"), "policy"),
    ZONE_WEBHOOK: Endpoint("zonectl.io", "v1alpha1", "securityzones", "SecurityZone", False,
                           ("CREATE", "UPDATE", "DELETE"), "zone"),
}


class MalformedReview(ValidationError):
    """A review no decision may be made on: denied for ``uid``, or refused with HTTP ``http`` if it has none."""

    def __init__(self, problems: list[Problem], *, uid: str | None = None, http: int = 400,
                 source: str = "malformed AdmissionReview") -> None:
        super().__init__(problems, source=source)
        self.uid = uid
        self.http = http


@dataclass(frozen=True)
class Review:
    """The parts of a checked review the webhooks decide on."""

    webhook: str
    uid: str
    operation: str
    object: Mapping[str, Any] | None
    old: Mapping[str, Any] | None
    dry_run: bool
    user: Mapping[str, Any]


def short(value: Any, limit: int = 60) -> str:
    """A value as the message shows it: JSON's ``null``, else its repr cut to ``limit``."""
    return "null" if value is None else _short(value, limit)


def _envelope(path: str, reason: str) -> MalformedReview:
    return MalformedReview([Problem(path, reason)])


def check_review(body: Any, webhook: str) -> Review:
    """The checked review for ``webhook``, or MalformedReview naming every problem found."""
    endpoint = ENDPOINTS.get(webhook)
    if endpoint is None:
        known = ", ".join(f"/{w}" for w in ENDPOINTS)
        raise MalformedReview([Problem("", f"zonectl serves {known}, not /{short(webhook)[1:-1]}")], http=404,
                              source="unknown webhook path")
    if not isinstance(body, Mapping):
        raise _envelope("", f"must be an AdmissionReview object, not {type_name(body)}")
    if body.get("apiVersion") != API_VERSION:
        raise _envelope("apiVersion", f"{short(body.get('apiVersion'))} is not {API_VERSION} (the version "
                                      "zonectl's webhook configurations ask for)")
    if body.get("kind") != "AdmissionReview":
        raise _envelope("kind", f"{short(body.get('kind'))} is not AdmissionReview")
    req = body.get("request")
    if not isinstance(req, Mapping):
        raise _envelope("request", f"must be an object, not {type_name(req)}")
    uid = req.get("uid")
    if not isinstance(uid, str) or not 0 < len(uid) <= MAX_UID or not uid.isprintable():
        raise _envelope("request.uid", f"{short(uid)} is not a uid (a non-empty string of at most {MAX_UID} "
                                       "printable characters)")

    errs = Collector()
    operation = req.get("operation")
    if operation not in OPERATIONS:
        errs.add("request.operation", f"{short(operation)} is not one of {', '.join(OPERATIONS)}")
    elif operation not in endpoint.operations:
        errs.add("request.operation", f"/{webhook} judges {' and '.join(endpoint.operations)} of {endpoint.resource}, "
                                      f"not {operation} (see its rules in manifests/webhooks/)")
    _reference(req, "resource", ("group", "version", "resource"),
               (endpoint.group, endpoint.version, endpoint.resource), errs)
    _reference(req, "kind", ("group", "version", "kind"), (endpoint.group, endpoint.version, endpoint.kind), errs)
    if req.get("subResource") not in (None, ""):
        errs.add("request.subResource", f"{short(req.get('subResource'))}: /{webhook} judges {endpoint.resource}, "
                                        "not a subresource")
    for key, kind in (("name", str), ("namespace", str), ("requestSubResource", str), ("requestKind", Mapping),
                      ("requestResource", Mapping), ("options", Mapping)):
        if req.get(key) is not None and not isinstance(req[key], kind):
            errs.add(f"request.{key}", f"must be {'a string' if kind is str else 'an object'}, not {type_name(req[key])}")
    namespace: str = req["namespace"] if isinstance(req.get("namespace"), str) else ""
    user = _user(req.get("userInfo"), errs)
    dry_run = req.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        errs.add("request.dryRun", f"{short(dry_run)} must be true or false")
    objects: dict[str, Mapping[str, Any] | None] = {}
    for key in ("object", "oldObject"):
        needed = (key == "object" and operation in ("CREATE", "UPDATE")) or (key == "oldObject" and operation in
                                                                              ("UPDATE", "DELETE"))
        value = req.get(key)
        if value is None:
            if needed:
                errs.add(f"request.{key}", f"is required for {operation}")
            objects[key] = None
        else:  # present, needed or not: kopf's engine reads it either way
            objects[key] = _object(value, f"request.{key}", endpoint, namespace, errs)
    if errs.problems:
        raise MalformedReview(errs.problems, uid=uid)
    assert isinstance(operation, str) and user is not None
    return Review(webhook, uid, operation, objects["object"], objects["oldObject"], bool(dry_run), user)


def _reference(req: Mapping[str, Any], key: str, names: tuple[str, str, str], wanted: tuple[str, str, str],
               errs: Collector) -> None:
    """``request.resource`` / ``request.kind``: exactly what this webhook judges."""
    value = req.get(key)
    got = tuple(value.get(n) for n in names) if isinstance(value, Mapping) else None
    if got != wanted:
        expected = ", ".join(f"{n}: {w!r}" for n, w in zip(names, wanted, strict=True))
        errs.add(f"request.{key}", f"must be {{{expected}}}, not {short(value, 120)}")


def _user(value: Any, errs: Collector) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        errs.add("request.userInfo", f"must be an object, not {type_name(value)}")
        return None
    for key in ("username", "uid"):
        if value.get(key) is not None and not isinstance(value[key], str):
            errs.add(f"request.userInfo.{key}", f"must be a string, not {type_name(value[key])}")
    groups = value.get("groups")
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        errs.add("request.userInfo.groups", "must be a list of strings")
    extra = value.get("extra")
    if extra is not None and not (isinstance(extra, Mapping) and all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in extra.values())):
        errs.add("request.userInfo.extra", "must map names to lists of strings")
    return value


def _object(value: Any, path: str, endpoint: Endpoint, namespace: str, errs: Collector) -> Mapping[str, Any] | None:
    """An object as the API server sends it: its apiVersion and kind, metadata, labels and annotations."""
    if not isinstance(value, Mapping):
        errs.add(path, f"must be an object, not {type_name(value)}")
        return None
    for key, wanted in (("apiVersion", endpoint.api_version), ("kind", endpoint.kind)):
        if value.get(key) != wanted:
            errs.add(f"{path}.{key}", f"{short(value.get(key))} is not {wanted}")
    meta = value.get("metadata")
    if not isinstance(meta, Mapping):
        errs.add(f"{path}.metadata", f"must be an object, not {type_name(meta)}")
        return None
    for key in ("name", "generateName", "namespace", "uid", "resourceVersion"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            errs.add(f"{path}.metadata.{key}", f"must be a string, not {type_name(meta[key])}")
    own = meta.get("namespace")
    if endpoint.namespaced and (own is None or isinstance(own, str)):
        if not own:  # the API server sets it from the request path before admission
            errs.add(f"{path}.metadata.namespace", f"is required: a {endpoint.kind} is namespaced")
        elif namespace and own != namespace:
            errs.add(f"{path}.metadata.namespace", f"{short(own)} is not the request's namespace {short(namespace)}")
    elif not endpoint.namespaced and own:
        errs.add(f"{path}.metadata.namespace", f"must be empty: a {endpoint.kind} is cluster-scoped")
    for key in ("labels", "annotations"):
        _string_map(meta.get(key), f"{path}.metadata.{key}", errs)
    for key in ("spec", "status"):
        if value.get(key) is not None and not isinstance(value[key], Mapping):
            errs.add(f"{path}.{key}", f"must be an object, not {type_name(value[key])}")
    status = value.get("status")
    if endpoint.kind == "SecurityZone" and isinstance(status, Mapping) and status.get("podCount") is not None:
        count = status["podCount"]  # the zone guard refuses deleting a zone in use by it
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            errs.add(f"{path}.status.podCount", f"{short(count)} must be a whole number of pods")
    return value


def _string_map(value: Any, path: str, errs: Collector) -> None:
    """Labels and annotations: absent, or a map of strings to strings."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        errs.add(path, f"must be a map of strings, not {type_name(value)}")
        return
    for key, item in value.items():
        if not isinstance(item, str):
            errs.add(f"{path}.{short(key, 80)[1:-1]}", f"must be a string, not {type_name(item)}")


def denial(uid: str, message: str, code: int = 400) -> dict[str, Any]:
    """An AdmissionReview response refusing the request ``uid``, shaped as kopf's engine shapes one."""
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": False, "status": {"message": message, "code": code}}}


REASONS = {400: "BadRequest", 404: "NotFound"}


def http_status(code: int, message: str) -> dict[str, Any]:
    """A ``Status`` body for an HTTP error: the API server's client decodes it and keeps its message."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": REASONS.get(code, "BadRequest"), "code": code}
