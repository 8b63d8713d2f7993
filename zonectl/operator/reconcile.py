"""Policy reconciliation: body -> authority check -> compile -> backend sync -> outcome (status + events).

No kopf here: the handlers pass the body in and write the outcome out, so this logic is tested with
real bodies and a real backend, and stays the same whatever triggered it (create, update, resume, the
periodic resync, or a zone change).

Invariants:
* fail closed on bad input: a policy that does not parse or compile changes nothing in the backend;
  its previous good rules (if any) stay enforced and the status says so;
* a policy whose namespace lost the right to govern its zones (see ``authority.py``) is removed from
  the backend: keeping it would keep the escalation;
* the backend always gets the complete set of good rules (priorities are ranked over all of them);
  rows of policies the controller has not seen yet (just started, still listing) are kept untouched,
  so a restart never flaps enforcement;
* one backend call at a time (an asyncio lock): each call is one transaction over a consistent set;
* in OVN interconnect mode (``PublishedBackend``) the published document *is* the enforcement: it then
  carries every rule and the policies to keep, a failed publish is a failed program (status, retry), and
  the document is written by one task at a time from the state of that moment (never an older one last).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..core.errors import ValidationError, ZonectlError
from ..core.nat64 import Nat64Prefix
from ..core.policy import parse_policy
from ..core.rules import Rule, compile_policy
from ..core import published
from .publish import Publisher
from .authority import authority_problems
from .backend import PUBLISH, Backend, BackendReport
from .config import OperatorSettings
from .metrics import Metrics
from .status import Condition, render_conditions
from .zonestate import ZoneState

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Note:
    """A Kubernetes Event to post on the object: type Normal/Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class PolicyOutcome:
    """The result of one reconciliation, ready to become ``status`` and Events."""

    key: str
    generation: int
    result: str  # ok, invalid, unauthorized, sync-error, log-only, disabled
    compiled: Condition
    programmed: Condition
    rule_count: int  # rules in force for this policy now (the previous generation's if this one failed)
    notes: tuple[Note, ...] = ()

    @property
    def ready(self) -> Condition:
        ok = self.compiled.status is True and self.programmed.status is True
        if ok:
            return Condition("Ready", True, "Enforced", f"{self.rule_count} rules enforced")
        failing = self.compiled if self.compiled.status is not True else self.programmed
        return Condition("Ready", False, failing.reason, failing.message)

    def status(self, previous: Mapping[str, Any] | None, now: str | None = None) -> dict[str, Any]:
        """The ``status`` of the SecurityZonePolicy (fields of the CRD's schema only)."""
        prev = (previous or {}).get("conditions")
        return {
            "observedGeneration": self.generation,
            "ruleCount": self.rule_count,
            "conditions": render_conditions([self.compiled, self.programmed, self.ready], prev, self.generation, now),
        }


ERROR_LIMIT = 400


def short(exc: BaseException, limit: int = ERROR_LIMIT) -> str:
    """A backend error for a status message or Event: bounded (ovsdbapp errors can embed whole plans)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def policy_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


@dataclass
class PolicyReconciler:
    """Holds the last good compiled rules of every policy and keeps the backend equal to their union."""

    state: ZoneState
    settings: OperatorSettings
    nat64: Nat64Prefix | None
    backend: Backend
    metrics: Metrics = field(default_factory=Metrics)
    publisher: Publisher | None = None
    clock: Callable[[], float] = time.monotonic

    good: dict[str, tuple[Rule, ...]] = field(default_factory=dict, init=False)
    good_generation: dict[str, int] = field(default_factory=dict, init=False)
    dirty: set[str] = field(default_factory=set, init=False)
    last_run: dict[str, float] = field(default_factory=dict, init=False)
    revoked: set[str] = field(default_factory=set, init=False)  # rules removed: the namespace lost the right
    publish_error: str | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _publish_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _published: str | None = field(default=None, init=False)
    _published_at: float = field(default=float("-inf"), init=False)

    @property
    def interconnect(self) -> bool:
        """OVN interconnect mode: nothing is written to OVN here; the node agents sync the published rules."""
        return self.backend.mode == PUBLISH

    # --- triggers --------------------------------------------------------------------------------
    def mark_zone(self, zone: str) -> set[str]:
        """A zone changed: every policy that names it (governed or as a peer) must be recompiled."""
        keys = set(self.state.policies_referencing(zone))
        self.dirty |= keys
        return keys

    def mark_namespace(self, namespace: str) -> set[str]:
        """A namespace's labels changed: its policies' authority may have changed."""
        keys = {k for k in self.state.policy_refs if k.split("/", 1)[0] == namespace}
        self.dirty |= keys
        return keys

    def due(self, key: str) -> bool:
        """Whether the periodic timer should reconcile now: marked dirty, or the resync interval passed."""
        last = self.last_run.get(key)
        return key in self.dirty or last is None or self.clock() - last >= self.settings.resync_seconds

    def seed(self, bodies: Sequence[Mapping[str, Any]]) -> int:
        """Start-up: take every listed policy that is authorized and compiles as the desired state.

        Without it, the first policies resumed after a restart would be synced (and their OVN priorities
        ranked) without the others; with it, the first sync already covers every policy, so a restart
        never reorders enforcement. Nothing is written here; the resume handlers sync and write status.
        Returns how many of ``bodies`` were taken.
        """
        taken = 0
        for body in bodies:
            key = policy_key(body)
            self.state.set_policy(key, body)
            if authority_problems(body, self.state, self.settings):
                continue
            try:
                rules = compile_policy(parse_policy(body, self.state.registry), self.state.registry, self.nat64)
            except ValidationError:
                continue
            self.good[key] = rules
            self.good_generation[key] = int((body.get("metadata") or {}).get("generation") or 0)
            taken += 1
        return taken

    # --- reconcile -------------------------------------------------------------------------------
    async def reconcile(self, body: Mapping[str, Any]) -> PolicyOutcome:
        key = policy_key(body)
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        self.state.set_policy(key, body)
        self.dirty.discard(key)
        self.last_run[key] = self.clock()
        problems = authority_problems(body, self.state, self.settings)
        if problems:
            outcome = await self._unauthorized(key, generation, str(ValidationError(problems, source=f"SecurityZonePolicy {key}")))
        else:
            try:
                policy = parse_policy(body, self.state.registry)
                rules = compile_policy(policy, self.state.registry, self.nat64)
            except ValidationError as exc:
                outcome = self._invalid(key, generation, str(exc))
            else:
                outcome = await self._program(key, generation, rules)
        self.metrics.reconcile_total.labels("policy", outcome.result).inc()
        if outcome.result not in ("ok", "log-only", "disabled"):
            self.metrics.reconcile_errors.labels("policy", outcome.result).inc()
        self.metrics.policy_rules.labels(key).set(outcome.rule_count)
        return outcome

    def _kept(self, key: str) -> Condition:
        if key in self.good:
            return Condition("Programmed", True, "PreviousGeneration",
                             f"still enforcing the {len(self.good[key])} rules of generation {self.good_generation[key]}")
        return Condition("Programmed", False, "NotCompiled", "nothing is enforced: no generation of this policy compiled")

    def _invalid(self, key: str, generation: int, message: str) -> PolicyOutcome:
        LOG.warning("policy %s does not compile: %s", key, message)
        return PolicyOutcome(
            key, generation, "invalid", Condition("Compiled", False, "InvalidPolicy", message), self._kept(key),
            len(self.good.get(key, ())), (Note("Warning", "CompileFailed", message),),
        )

    async def _unauthorized(self, key: str, generation: int, message: str) -> PolicyOutcome:
        compiled = Condition("Compiled", False, "Unauthorized", message)
        notes = [Note("Warning", "Unauthorized", message)]
        async with self._lock:
            try:
                owned = await asyncio.to_thread(self.backend.owned_policies)
                if key in owned or key in self.good:
                    report = await asyncio.to_thread(self.backend.remove, key)
                    notes.append(Note("Warning", "RulesRemoved", f"removed the rules of {key}: {report.summary}"))
            except ZonectlError as exc:
                self.dirty.add(key)
                programmed = Condition("Programmed", None, "RemoveFailed", f"could not remove its rules: {short(exc)}")
                return PolicyOutcome(key, generation, "sync-error", compiled, programmed,
                                     len(self.good.get(key, ())), tuple(notes) + (Note("Warning", "SyncFailed", short(exc)),))
            self.good.pop(key, None)
            self.good_generation.pop(key, None)
            self.revoked.add(key)
        programmed = Condition("Programmed", False, "Unauthorized", "no rules of this policy are enforced")
        if not await self._publish() and self.interconnect:
            self.dirty.add(key)  # the node agents still enforce its rules: retry until the removal is published
            message = f"could not publish the removal for the node agents: {self.publish_error}"
            programmed = Condition("Programmed", False, "PublishFailed", message)
            notes.append(Note("Warning", "PublishFailed", message))
        return PolicyOutcome(key, generation, "unauthorized", compiled, programmed, 0, tuple(notes))

    async def _program(self, key: str, generation: int, rules: tuple[Rule, ...]) -> PolicyOutcome:
        compiled = Condition("Compiled", True, "Compiled", f"{len(rules)} rules")
        async with self._lock:
            union = [r for k, rs in self.good.items() if k != key for r in rs] + list(rules)
            known = set(self.good) | {key}
            started = time.perf_counter()
            try:
                report = await asyncio.to_thread(self._sync, union, known)
            except ZonectlError as exc:
                self.dirty.add(key)  # the timer retries
                LOG.error("policy %s: backend sync failed: %s", key, short(exc, 4000))
                message = f"backend sync failed: {short(exc)}"
                kept = self._kept(key)
                programmed = Condition("Programmed", False, "SyncFailed",
                                       (f"{kept.message}; " if kept.status else "") + message)
                return PolicyOutcome(key, generation, "sync-error", compiled, programmed,
                                     len(self.good.get(key, ())), (Note("Warning", "SyncFailed", message),))
            finally:
                self.metrics.sync_seconds.observe(time.perf_counter() - started)
            previous = self.good.get(key, ())
            self.good[key] = rules
            self.good_generation[key] = generation
            self.revoked.discard(key)
        if not await self._publish() and self.interconnect:
            self.dirty.add(key)  # the timer retries
            message = f"could not publish the rules for the node agents: {self.publish_error}"
            return PolicyOutcome(key, generation, "sync-error", compiled,
                                 Condition("Programmed", False, "PublishFailed", message), len(rules),
                                 (Note("Warning", "PublishFailed", message),))
        return self._programmed(key, generation, compiled, rules, report, previous)

    def _sync(self, union: list[Rule], known: set[str]) -> BackendReport:
        keep = self.backend.owned_policies() - known
        return self.backend.sync(union, keep)

    def _programmed(self, key: str, generation: int, compiled: Condition, rules: tuple[Rule, ...],
                    report: BackendReport, previous: tuple[Rule, ...] = ()) -> PolicyOutcome:
        if report.mode == "off":
            programmed = Condition("Programmed", False, "Disabled", "OVN sync is off (config ovn.drift: off)")
            return PolicyOutcome(key, generation, "disabled", compiled, programmed, len(rules))
        if report.mode == "log":
            programmed = Condition("Programmed", False, "LogOnly", f"OVN sync only logs (ovn.drift: log): {report.summary}")
            return PolicyOutcome(key, generation, "log-only", compiled, programmed, len(rules))
        gw = sum(1 for r in rules if r.direction == "egress" and r.nat64)
        if report.mode == PUBLISH:
            # Interconnect: the controller cannot see every node's NB; each node agent reports its own sync
            # (logs, zonectl_ovn_agent_* metrics). "Published" = handed to them, in the document they read.
            drift = self.backend.drift
            if drift == "off":
                programmed = Condition("Programmed", False, "Disabled", "OVN sync is off (config ovn.drift: off): "
                                       "the node agents write nothing")
                return PolicyOutcome(key, generation, "disabled", compiled, programmed, len(rules))
            if drift == "log":
                programmed = Condition("Programmed", False, "LogOnly", "published, but the node agents only log "
                                       "(ovn.drift: log)")
                return PolicyOutcome(key, generation, "log-only", compiled, programmed, len(rules))
            message = f"{len(rules)} rules published to the OVN node agents ({gw} also for the NAT64 gateway)"
            notes: tuple[Note, ...] = ()
            new, old = {r.id for r in rules}, {r.id for r in previous}
            if new != old:  # this policy's rules changed (a restart re-seeds them: no Event then)
                notes = (Note("Normal", "Published", f"generation {generation}: {len(rules)} rules; for the node "
                                                     f"agents {len(new - old)} added, {len(old - new)} removed"),)
            return PolicyOutcome(key, generation, "ok", compiled, Condition("Programmed", True, "Published", message),
                                 len(rules), notes)
        # The condition says what is enforced (stable across resyncs, so no needless status writes);
        # what this sync changed goes into an Event, only when it changed something.
        message = f"{len(rules)} rules enforced in OVN ({gw} also by the NAT64 gateway)"
        notes = ()
        if report.changes:
            notes = (Note("Normal", "Programmed", f"generation {generation}: {len(rules)} rules; OVN rows created "
                                                  f"{report.created}, updated {report.updated}, deleted {report.deleted}"),)
        return PolicyOutcome(key, generation, "ok", compiled, Condition("Programmed", True, "Synced", message),
                             len(rules), notes)

    # --- delete ----------------------------------------------------------------------------------
    async def delete(self, key: str) -> BackendReport:
        """Remove exactly this policy's rows; raises (so the finalizer stays) if the backend fails."""
        async with self._lock:
            report = await asyncio.to_thread(self.backend.remove, key)
            self.good.pop(key, None)
            self.good_generation.pop(key, None)
        self.state.remove_policy(key)
        self.revoked.discard(key)
        if self.interconnect and not await self._publish():
            # The node agents still enforce its rules: keep the finalizer, kopf retries the deletion.
            raise ZonectlError(f"could not publish the removal for the node agents: {self.publish_error}")
        self.dirty.discard(key)
        self.last_run.pop(key, None)
        self.metrics.reconcile_total.labels("policy", "deleted").inc()
        try:
            self.metrics.policy_rules.remove(key)
        except KeyError:
            pass
        if not self.interconnect:
            await self._publish()
        return report

    # --- gateway ---------------------------------------------------------------------------------
    def keep_policies(self) -> set[str]:
        """Policies whose OVN rows the node agents leave exactly as they are: seen, but no good generation
        here and not revoked. The same rows a central sync keeps (``_sync``): e.g. a policy that does not
        compile after a controller restart keeps the rows of its earlier generation on every node."""
        return set(self.state.policy_refs) - set(self.good) - self.revoked

    def gateway_document(self) -> dict[str, Any]:
        rules = (r for rs in self.good.values() for r in rs)
        if not self.interconnect:
            return published.document(rules, self.state.registry)
        return published.document(rules, self.state.registry, complete=True, keep=self.keep_policies())

    async def _publish(self) -> bool:
        """Publish the document if it changed, or if the last publish is older than ``resyncSeconds`` (a
        ConfigMap edited or reset behind the controller's back comes back). False if publishing failed.

        One task at a time, each rendering the state of its own moment: the last write is never older
        than the state it follows (two reconciles racing cannot leave an older document in place)."""
        if self.publisher is None:
            return True
        async with self._publish_lock:
            text = published.render(self.gateway_document())
            now = self.clock()
            if text == self._published and now - self._published_at < self.settings.resync_seconds:
                return True
            try:
                await asyncio.to_thread(self.publisher.publish, text)
            except Exception as exc:  # an API or file error: log, count, retry with the next reconcile
                self.publish_error = short(exc)
                LOG.error("could not publish the rules (gateway inputs%s): %s",
                          ", OVN node agents" if self.interconnect else "", exc)
                self.metrics.reconcile_errors.labels("gateway", "publish").inc()
                return False
            if text != self._published:
                LOG.info("published inputs %s (%d rules)", published.digest(text),
                         sum(len(rs) for rs in self.good.values()))
            self._published, self._published_at, self.publish_error = text, now, None
            return True
