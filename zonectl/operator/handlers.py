"""The kopf handlers, in two registries: admission (every replica) and controller (the active replica).

Why two kopf operators in one process: kopf peering pauses *all* watches of a standby replica, but the
webhook must keep answering from a fresh view of zones and namespace labels on every replica (failure
policy Fail: a webhook with stale or no data would refuse pods or, worse, accept a revoked zone). So:

* the **admission** registry holds the webhooks and read-only ``on.event`` handlers that feed the shared
  ``ZoneState``; it runs standalone (no peering) on every replica and never writes to the API;
* the **controller** registry reconciles (status, finalizers, OVN, Events); it runs with peering, so
  exactly one replica acts.

Every handler is thin: take the body, call the pure parts (admission.py, reconcile.py, verify.py),
write the result into kopf's ``patch``/Events. They are methods of ``Controller`` so tests build a
Controller and call them with real bodies and real kopf ``Patch`` objects.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, cast

import kopf

from ..core.errors import Problem, ValidationError
from ..core.fields import short as short_value
from ..core.policy import parse_policy
from ..core.zones import parse_zone
from .admission import PodDecision, decide_create, decide_update, json_patch, review_response
from .authority import authority_problems
from .config import ControllerConfig
from .metrics import Metrics
from .reconcile import Note, PolicyOutcome, PolicyReconciler, policy_key, short
from .review import ENDPOINTS, POD_WEBHOOK, POLICY_WEBHOOK, ZONE_WEBHOOK, Review
from .status import Condition, find, render_conditions, same_status, with_condition
from .verify import PodTracker, PodView, is_terminated, observe
from .zonestate import ZoneState

LOG = logging.getLogger(__name__)

GROUP = "zonectl.io"
ZONES = (GROUP, "securityzones")
POLICIES = (GROUP, "securityzonepolicies")



def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


def _labels(body: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((body or {}).get("metadata") or {}).get("labels") or {}


def _annotations(body: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((body or {}).get("metadata") or {}).get("annotations") or {}


def post(body: Mapping[str, Any], note: Note) -> None:
    """Post a Kubernetes Event through kopf's poster (queued, posted in the background)."""
    kopf.event(cast(Any, body), type=note.type, reason=note.reason, message=note.message[:1024])


def pod_ref(view: PodView) -> dict[str, Any]:
    """A minimal Pod body, enough for kopf to build the Event's involvedObject."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": view.name, "namespace": view.namespace, "uid": view.uid}}


@dataclass
class Controller:
    """Everything the handlers share: config, the zone/namespace state, the reconciler, the pod tracker."""

    config: ControllerConfig
    state: ZoneState
    reconciler: PolicyReconciler | None = None
    metrics: Metrics = field(default_factory=Metrics)
    tracker: PodTracker = field(default_factory=PodTracker)
    zone_conditions: dict[str, Condition] = field(default_factory=dict)
    seen_namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def settings(self):
        return self.config.operator

    # ============================== admission (every replica) ===================================
    def pod_decision(self, body: Mapping[str, Any], old: Mapping[str, Any] | None, operation: str) -> PodDecision:
        meta = body.get("metadata") or {}
        if operation == "UPDATE" and old is not None:
            return decide_update(_labels(old), _annotations(old), meta.get("labels") or {},
                                 meta.get("annotations") or {}, self.settings)
        return decide_create(str(meta.get("namespace") or ""), meta.get("labels") or {},
                             meta.get("annotations") or {}, self.state.table, self.settings)

    async def pod_hint(self, body: Any, old: Any, operation: str, dryrun: bool, patch: kopf.Patch,
                       warnings: list[str], userinfo: Mapping[str, Any] | None = None, **_: Any) -> None:
        """Mutating webhook for pods (kopf's engine): set or guard the IPAM hint from the zone label."""
        decision = self.pod_decision(body, old, operation)
        if not dryrun:  # dryRun: the same answer, but no side effects (counters, audit log lines)
            self._audit(decision, body.get("metadata") or {}, userinfo)
        warnings.extend(decision.warnings)
        if not decision.allowed:
            raise kopf.AdmissionError(decision.message, code=decision.code)
        if decision.action == "set":
            patch.metadata.annotations[self.settings.hint_annotation] = decision.value
        elif decision.action == "remove":
            patch.metadata.annotations[self.settings.hint_annotation] = None

    def pod_review(self, review: Review) -> dict[str, Any]:
        """The same webhook as ``pod_hint``, answered directly from the checked review (the fast path).

        kopf's engine deep-copies and diffs the whole pod to build a patch (~0.5 ms for a 3 KB pod); this
        path builds the one-operation patch itself, so the webhook costs little more than HTTP and JSON
        (benchmarks/admission.py). The review was checked (review.py), so its shape is the API server's.
        """
        body = review.object
        assert body is not None  # CREATE and UPDATE carry the object
        decision = self.pod_decision(body, review.old, review.operation)
        if not review.dry_run:
            self._audit(decision, body["metadata"], review.user)
        ops = json_patch(decision, self.settings.hint_annotation, body["metadata"].get("annotations"))
        return review_response(review.uid, decision, ops)

    def _audit(self, decision: PodDecision, meta: Mapping[str, Any], userinfo: Mapping[str, Any] | None) -> None:
        self.metrics.admitted("pod", decision.outcome)
        if decision.outcome.startswith(("spoof", "denied-spoof", "restored")):
            LOG.warning("hint spoofing %s: pod %s/%s by %s", decision.outcome, meta.get("namespace"),
                        meta.get("name") or meta.get("generateName"), (userinfo or {}).get("username"))

    async def policy_authority(self, body: Any, old: Any = None, operation: str = "CREATE", dryrun: bool = False,
                               **_: Any) -> None:
        """Validating webhook for SecurityZonePolicy: is it valid on its own, and may this namespace
        govern these zones?

        "Valid on its own" is the controller's parser without the zone lookup (compiling does that), so
        a typo is refused at ``kubectl apply`` from every client: the CRD keeps unknown fields for this.
        Only a changed spec is judged: metadata-only updates (the controller's own finalizer and
        annotations, or its removal of the finalizer of a policy that lost its authority) must pass.
        """
        if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
            return
        invalid: tuple[Problem, ...] = ()
        try:
            parse_policy(body, None)
        except ValidationError as exc:
            invalid = exc.problems
        problems = [*invalid, *authority_problems(body, self.state, self.settings)]
        if not dryrun:
            self.metrics.admitted("policy", "denied" if problems else "allowed")
        if problems:
            raise kopf.AdmissionError(str(ValidationError(problems, source=f"SecurityZonePolicy {policy_key(body)}")),
                                      code=400 if invalid else 403)

    async def zone_guard(self, body: Any, old: Any, operation: str, dryrun: bool = False, **_: Any) -> None:
        """Validating webhook for SecurityZone: valid and unique on write, and not deleted while in use."""
        name = _name(body)
        problems: list[str] = []
        pods = int(((old or body).get("status") or {}).get("podCount") or 0)
        if operation == "DELETE":
            users = self.state.policies_referencing(name)
            if pods:
                problems.append(f"{pods} pods are in zone {name} (status.podCount): their addresses carry its id; "
                                "delete or move them first")
            if users:
                problems.append(f"policies use zone {name}: {', '.join(users)}")
        elif operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
            pass  # metadata only (e.g. kopf's finalizer): never blocked, whatever the zone's state
        else:
            try:
                zone = parse_zone(body, self.state.layout)
                self.state.registry.with_zone(zone)
            except ValidationError as exc:
                problems.append(str(exc))
            else:
                old_id = ((old or {}).get("spec") or {}).get("id")
                if operation == "UPDATE" and old_id is not None and old_id != zone.id and pods:
                    shown = f"{old_id:#x}" if isinstance(old_id, int) else short_value(old_id)
                    problems.append(f"zone {name} has {pods} pods whose addresses carry id {shown}; changing the "
                                    "id would put them outside their zone's mask. Recreate them after the change")
        if not dryrun:
            self.metrics.admitted("zone", "denied" if problems else "allowed")
        if problems:
            raise kopf.AdmissionError(f"SecurityZone {name}: " + "; ".join(problems), code=403 if operation == "DELETE" else 400)

    # --- caches fed on every replica ---------------------------------------------------------------
    async def namespace_seen(self, body: Any, type: str | None, **_: Any) -> None:
        name = _name(body)
        if type == "DELETED":
            self.state.remove_namespace(name)
        else:
            self.state.set_namespace(name, _labels(body))

    async def zone_seen(self, body: Any, type: str | None, logger: logging.Logger = LOG, **_: Any) -> None:
        name = _name(body)
        if type == "DELETED":
            self.state.remove_zone(name)
            return
        try:
            self.state.upsert_zone(body)
        except ValidationError as exc:
            logger.warning("SecurityZone %s is not usable: %s", name, exc)
        self.metrics.zones.set(len(self.state.registry))

    async def policy_seen(self, body: Any, type: str | None, **_: Any) -> None:
        key = policy_key(body)
        if type == "DELETED":
            self.state.remove_policy(key)
        else:
            self.state.set_policy(key, body)

    # ============================== controller (active replica) =================================
    @property
    def rec(self) -> PolicyReconciler:
        if self.reconciler is None:
            raise RuntimeError("this Controller has no reconciler (admission-only)")
        return self.reconciler

    # --- zones ----------------------------------------------------------------------------------
    async def zone_changed(self, body: Any, patch: kopf.Patch, logger: logging.Logger = LOG, **_: Any) -> None:
        """SecurityZone created/updated/resumed: register it, recompile the policies that use it."""
        name = _name(body)
        try:
            zone = self.state.upsert_zone(body)
        except ValidationError as exc:
            cond = Condition("Ready", False, "Invalid", str(exc))
            post(body, Note("Warning", "InvalidZone", str(exc)))
            self.metrics.reconcile_errors.labels("zone", "invalid").inc()
        else:
            cond = Condition("Ready", True, "Registered",
                             f"id {zone.hex_id}; pods get annotation {self.settings.hint_annotation}="
                             f"{self.state.table.hints[zone.name]}")
        self.zone_conditions[name] = cond
        self.metrics.reconcile_total.labels("zone", "ok" if cond.status else "invalid").inc()
        self.metrics.zones.set(len(self.state.registry))
        marked = self.rec.mark_zone(name)
        if marked:
            logger.info("zone %s changed: recompiling %s", name, ", ".join(sorted(marked)))
        self._reverify()
        self._write_zone_status(body, patch)

    async def zone_deleted(self, body: Any, logger: logging.Logger = LOG, **_: Any) -> None:
        """SecurityZone deleted: unregister; policies that use it stop compiling (and keep their rules)."""
        name = _name(body)
        pods = self.tracker.pods_in(name)
        if pods:
            post(body, Note("Warning", "ZoneInUse", f"zone {name} deleted while {pods} pods carry its id; "
                                                    "their addresses now match no zone"))
        self.state.remove_zone(name)
        self.zone_conditions.pop(name, None)
        self.metrics.zones.set(len(self.state.registry))
        self.rec.mark_zone(name)
        self._reverify()

    async def zone_status(self, body: Any, patch: kopf.Patch, **_: Any) -> None:
        """Periodic: pod and mismatch counts (and conditions) into the zone's status, when they changed."""
        self._write_zone_status(body, patch)

    def zone_status_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        name = _name(body)
        pods, bad = self.tracker.pods_in(name), self.tracker.mismatches_in(name)
        ready = self.zone_conditions.get(name)
        if ready is None:
            err = self.state.zone_errors.get(name)
            ready = (Condition("Ready", False, "Invalid", str(err)) if err else
                     Condition("Ready", True, "Registered", "") if self.state.registry.get(name) else
                     Condition("Ready", None, "Pending", "not processed yet"))
        if bad:
            sample = "; ".join(f"{v.key}: {v.mismatch}" for v in self.tracker.mismatched(name))
            verified = Condition("AddressesVerified", False, "Mismatch", f"{bad} of {pods} pods: {sample}")
        else:
            verified = Condition("AddressesVerified", True, "Match", f"all {pods} pods with an address carry this zone")
        users = self.state.policies_referencing(name)
        used = Condition("InUse", bool(pods or users), "Used" if pods or users else "Unused",
                         f"{pods} pods; policies: {', '.join(users) or 'none'}")
        generation = meta.get("generation")
        return {
            "observedGeneration": generation,
            "podCount": pods,
            "mismatchCount": bad,
            "conditions": render_conditions([ready, verified, used], (body.get("status") or {}).get("conditions"),
                                            generation),
        }

    def _write_zone_status(self, body: Mapping[str, Any], patch: kopf.Patch) -> None:
        wanted = self.zone_status_body(body)
        name = _name(body)
        self.metrics.zone_pods.labels(name).set(wanted["podCount"])
        self.metrics.zone_mismatches.labels(name).set(wanted["mismatchCount"])
        if not same_status(body.get("status"), wanted, wanted.keys()):
            for k, v in wanted.items():
                patch.status[k] = v

    def _reverify(self) -> None:
        for view in self.tracker.reverify(self.state.registry, self.settings.label_key):
            self._report_mismatch(view)

    # --- policies -------------------------------------------------------------------------------
    async def policy_changed(self, body: Any, patch: kopf.Patch, **_: Any) -> None:
        """SecurityZonePolicy created/updated/resumed: compile and program now."""
        self._apply_outcome(body, patch, await self.rec.reconcile(body))

    async def policy_tick(self, body: Any, patch: kopf.Patch, **_: Any) -> None:
        """Periodic: recompile if a zone or namespace change marked it, or resync (drift repair) when due."""
        if self.rec.due(policy_key(body)):
            self._apply_outcome(body, patch, await self.rec.reconcile(body))

    async def policy_deleted(self, body: Any, patch: kopf.Patch, logger: logging.Logger = LOG, **_: Any) -> None:
        """Finalizer: remove exactly this policy's rows; if the backend fails, kopf retries (object stays).

        Why the deletion waits is said once per reason, twice: a Warning Event ``RemoveFailed`` and the
        policy's ``Ready`` condition. The condition is what a user sees when the policy's namespace is
        being deleted: the API server refuses new Events there, but not status writes."""
        key = policy_key(body)
        try:
            report = await self.rec.delete(key)
        except Exception as exc:
            self.metrics.reconcile_errors.labels("policy", "delete").inc()
            message = f"deletion waits: could not remove the rules of {key}: {short(exc)}"
            status = body.get("status") or {}
            ready = find(status.get("conditions"), "Ready") or {}
            if (ready.get("reason"), ready.get("message")) != ("RemoveFailed", message):
                post(body, Note("Warning", "RemoveFailed", message))
                patch.status["conditions"] = with_condition(status.get("conditions"),
                                                            Condition("Ready", False, "RemoveFailed", message),
                                                            status.get("observedGeneration"))
            raise kopf.TemporaryError(f"removing {key} failed: {short(exc)}", delay=10) from exc
        logger.info("removed the rules of %s: %s", key, report.summary)

    def _apply_outcome(self, body: Mapping[str, Any], patch: kopf.Patch, outcome: PolicyOutcome) -> None:
        for note in outcome.notes:
            post(body, note)
        wanted = outcome.status(body.get("status"))
        if not same_status(body.get("status"), wanted, wanted.keys()):
            for k, v in wanted.items():
                patch.status[k] = v

    # --- pods and namespaces --------------------------------------------------------------------
    async def pod_seen(self, body: Any, type: str | None, **_: Any) -> None:
        """Address verification: does the pod's address carry the zone of its label?"""
        uid = (body.get("metadata") or {}).get("uid", "")
        if type == "DELETED" or is_terminated(body):
            self.tracker.forget(uid)
            return
        view = observe(body, self.state.registry, self.settings.label_key)
        if self.tracker.update(view):
            self._report_mismatch(view, body)

    def _report_mismatch(self, view: PodView, body: Mapping[str, Any] | None = None) -> None:
        self.metrics.mismatch_events.labels(view.zone or "").inc()
        post(body or pod_ref(view), Note("Warning", "ZoneAddressMismatch", str(view.mismatch)))

    async def namespace_changed(self, body: Any, type: str | None, **_: Any) -> None:
        """Labels decide which zones a namespace may use: recheck its policies when they change."""
        name = _name(body)
        labels = None if type == "DELETED" else dict(_labels(body))
        await self.namespace_seen(body=body, type=type)
        if self.seen_namespaces.get(name) != labels:
            if name in self.seen_namespaces or labels is None:
                self.rec.mark_namespace(name)
            if labels is None:
                self.seen_namespaces.pop(name, None)
            else:
                self.seen_namespaces[name] = labels

    async def probe_zones(self, **_: Any) -> dict[str, Any]:
        return {"zones": len(self.state.registry), "revision": self.state.revision, "at": time.time()}


def _h(fn: Callable[..., Any]) -> Any:
    """A bound method as kopf's callback type (kopf's protocols spell out every keyword it may pass)."""
    return fn


def admission_registry(ctl: Controller) -> kopf.OperatorRegistry:
    """Webhooks and cache feeds; read-only towards the API. Runs on every replica (no peering)."""
    reg = kopf.OperatorRegistry()
    ops = {w: list(e.operations) for w, e in ENDPOINTS.items()}  # as review.py checks them
    kopf.on.mutate("pods", id=POD_WEBHOOK, operations=ops[POD_WEBHOOK], side_effects=False,
                   registry=reg)(_h(ctl.pod_hint))
    kopf.on.validate(*POLICIES, id=POLICY_WEBHOOK, operations=ops[POLICY_WEBHOOK], registry=reg)(_h(ctl.policy_authority))
    kopf.on.validate(*ZONES, id=ZONE_WEBHOOK, operations=ops[ZONE_WEBHOOK], registry=reg)(_h(ctl.zone_guard))
    kopf.on.event("namespaces", id="namespace-cache", registry=reg)(_h(ctl.namespace_seen))
    kopf.on.event(*ZONES, id="zone-cache", registry=reg)(_h(ctl.zone_seen))
    kopf.on.event(*POLICIES, id="policy-cache", registry=reg)(_h(ctl.policy_seen))
    kopf.on.probe(id="zones", registry=reg)(_h(ctl.probe_zones))
    return reg


# Kinds the controller operator watches with on.event handlers only: kopf keeps no diff base for them
# (webhook.DiffBaseStorage; a pod event costs a third of what it did).
WATCH_ONLY = ("Pod",)


def controller_registry(ctl: Controller) -> kopf.OperatorRegistry:
    """Reconciliation: status, finalizers, OVN, Events. Runs with peering: one active replica."""
    reg = kopf.OperatorRegistry()
    s = ctl.settings
    for reason in ("resume", "create", "update"):
        getattr(kopf.on, reason)(*ZONES, id=f"zone-{reason}", registry=reg)(_h(ctl.zone_changed))
        getattr(kopf.on, reason)(*POLICIES, id=f"policy-{reason}", registry=reg)(_h(ctl.policy_changed))
    kopf.on.delete(*ZONES, id="zone-delete", optional=True, registry=reg)(_h(ctl.zone_deleted))
    kopf.on.delete(*POLICIES, id="policy-delete", registry=reg)(_h(ctl.policy_deleted))
    kopf.timer(*ZONES, id="zone-status", interval=s.status_seconds, initial_delay=s.status_seconds,
               registry=reg)(_h(ctl.zone_status))
    kopf.timer(*POLICIES, id="policy-resync", interval=s.check_seconds, initial_delay=s.check_seconds,
               registry=reg)(_h(ctl.policy_tick))
    kopf.on.event("pods", id="pod-verify", registry=reg)(_h(ctl.pod_seen))
    kopf.on.event("namespaces", id="namespace-authority", registry=reg)(_h(ctl.namespace_changed))
    return reg
