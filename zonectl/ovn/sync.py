"""Sync = a set difference between the ACL rows the rules want and the rows zonectl owns (``plan``), in ONE
transaction.

The diff is computed inside the ovsdbapp command, from the IDL cache of the moment the transaction is
built, so a retried transaction (TRY_AGAIN after a concurrent write) is re-planned, not replayed stale.
Switch rows are OVN-Kubernetes' and only ever *mutated* (insert/delete of our ACL references), never
overwritten, so a concurrent OVN-K write to the same switch is not lost. A plan with no change sends
no transaction at all: a second sync writes nothing.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, replace
from ipaddress import IPv6Network
from typing import Any, Collection, Iterable, Mapping

from zonectl.core.errors import ValidationError, ZonectlError
from zonectl.core.layout import Layout
from zonectl.core.rules import Rule, RuleSet
from zonectl.render.ovn_match import POLICY_KEY, AclSettings, RenderedAcl, assign_priorities

from .config import DRIFT_MODES, DriftMode, OvnConfig, parse_ovn
from .connection import NbClient, OvnError, brief
from .guards import Limits, check
from .plan import Change, Plan, SyncReport, desired_acls, make_plan
from .state import SwitchSelector, node_switches, owned_acls

__all__ = ["Change", "OutcomeUnknown", "Plan", "SyncMode", "SyncReport", "SyncSettings", "desired_acls", "make_plan",
           "remove_policy", "sync"]
LOG = logging.getLogger(__name__)
SyncMode = DriftMode


@dataclass(frozen=True)
class SyncSettings:
    """Everything sync needs besides the rules: how rows look, which switches carry them, what it may remove."""

    acl: AclSettings
    switches: SwitchSelector
    tier: int | None = None  # ovn.tier as configured; ``acl.tier`` is it only while the NB schema has tiers
    limits: Limits = Limits()

    @classmethod
    def build(cls, section: Mapping[str, Any], cluster: Layout | IPv6Network | None, has_tier: bool) -> "SyncSettings":
        """From the config's ``ovn`` section; ``has_tier`` from the connected server's schema."""
        return cls.from_config(parse_ovn(section), cluster, has_tier)

    @classmethod
    def from_config(cls, ovn: OvnConfig, cluster: Layout | IPv6Network | None, has_tier: bool) -> "SyncSettings":
        """``cluster``: the layout (its cluster prefix selects the node switches, its zone field is checked against
        their pod subnets) or just the cluster prefix."""
        layout = cluster if isinstance(cluster, Layout) else None
        prefix = layout.cluster if layout is not None else cluster
        acl = AclSettings(controller=ovn.controller, tier=ovn.tier if has_tier else None, allow_action=ovn.allow_action,
                          deny_action=ovn.deny_action, priority_min=ovn.priority_min, priority_max=ovn.priority_max)
        selector = SwitchSelector(
            cluster=prefix if isinstance(prefix, IPv6Network) else None,
            names=ovn.switches,
            node_port_prefix=ovn.node_port_prefix,
            names_must_exist=not ovn.interconnect,
            zone_offset=layout.zone_offset if layout is not None else None,
        )
        return cls(acl, selector, ovn.tier, Limits(ovn.max_switch_drop, ovn.allow_empty))

    def for_schema(self, has_tier: bool) -> "SyncSettings":
        """These settings for a server whose schema has (or lacks) ACL tiers: an upgrade may add them."""
        tier = self.tier if has_tier else None
        return self if tier == self.acl.tier else replace(self, acl=replace(self.acl, tier=tier))

    def allowing(self, *, empty: bool | None = None, switch_drop: bool = False) -> "SyncSettings":
        """These settings with a removal allowed for one call (``--allow-empty``, ``--allow-switch-drop``)."""
        limits = Limits(1.0 if switch_drop else self.limits.max_switch_drop,
                        self.limits.allow_empty if empty is None else empty)
        return replace(self, limits=limits)


# ----- the command ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    """One planning of the transaction (ovsdbapp re-plans after TRY_AGAIN, e.g. a reconnect)."""

    plan: Plan
    desired: int
    owned: int
    switches: list[str]
    sent: bool  # written to a connected session: NB may apply it whatever happens to the answer


class _SyncCommandMixin:
    """Plans from the live cache inside the transaction, then (if ``write``) applies the plan to ``txn``.

    Every planning is recorded (``attempts``), so the caller can tell "nothing was sent" from "sent, no
    answer". Once the caller has given up (``abandon``), a queued or retried run writes nothing."""

    def __init__(self, api, rules: list[Rule], settings: SyncSettings, write: bool, keep_policies: Collection[str]):
        super().__init__(api)  # type: ignore[call-arg]
        self.rules = rules
        self.settings = settings
        self.write = write
        self.keep_policies = frozenset(keep_policies)
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._abandoned = False

    def run_idl(self, txn) -> None:
        tables = self.api.tables  # type: ignore[attr-defined]
        switches = node_switches(tables, self.settings.switches)
        owned = owned_acls(tables, self.settings.acl.controller)
        kept_rules = any(r.external_ids.get(POLICY_KEY) in self.keep_policies for r in owned)
        desired = desired_acls(self.rules, switches, self.settings.acl, exemptions=bool(self.rules) or kept_rules)
        # Kept policies' rows are left as they are, but follow the switches (a new node is covered too).
        for row in owned:
            if row.external_ids.get(POLICY_KEY) in self.keep_policies and row.key and row.key not in desired:
                desired[row.key] = RenderedAcl(row.key, row.columns, frozenset(s.name for s in switches))
        check(tables, self.settings.switches, switches, owned, len(desired), self.settings.limits)
        plan = make_plan(desired, owned, keep_policies=self.keep_policies,
                         schema_columns=tables["ACL"].columns.keys())
        writes = self.write and txn is not None and not plan.empty
        with self._lock:
            if self._abandoned:
                raise OvnError("the caller gave up on this sync before it was sent: nothing written")
            idl = self.api.idl  # type: ignore[attr-defined]
            # The IDL sends only when connected and monitoring (else its commit says TRY_AGAIN, nothing sent).
            sent = writes and bool(idl._session.is_connected()) and idl.state == idl.IDL_S_MONITORING
            self.attempts.append(Attempt(plan, len(desired), len(owned), [s.name for s in switches], sent))
        self.result = plan
        if writes:
            _apply(txn, tables, plan)

    def abandon(self) -> bool:
        """The caller gives up: no later run writes. True if an earlier run may have reached NB."""
        with self._lock:
            self._abandoned = True
            return any(a.sent for a in self.attempts)


def _apply(txn, tables: Mapping[str, Any], plan: Plan) -> None:
    sw_rows = {row.name: row for row in tables["Logical_Switch"].rows.values()}
    acl_rows = tables["ACL"].rows
    for want in plan.creates:
        row = txn.insert(tables["ACL"])
        for col, value in want.columns.items():
            setattr(row, col, [] if value is None else value)
        for sw in sorted(want.switches):
            sw_rows[sw].addvalue("acls", row)
    for owned, diff in plan.updates:
        row = acl_rows.get(owned.uuid)
        if row is None:
            raise OvnError(f"ACL {owned.uuid} vanished while syncing")
        for col, value in diff.items():
            setattr(row, col, [] if value is None else value)
    for uuid, sw in plan.attach:
        sw_rows[sw].addvalue("acls", acl_rows[uuid])
    for uuid, sw in plan.detach:
        sw_rows[sw].delvalue("acls", acl_rows[uuid])
    for owned in plan.deletes:
        row = acl_rows.get(owned.uuid)
        if row is None:
            continue
        for sw in owned.switches:
            if sw in sw_rows:
                sw_rows[sw].delvalue("acls", row)


@functools.cache
def _command_class() -> type:
    """ovsdbapp is imported on first use only, so rendering (``zonectl compile --target ovn``) needs none."""
    from ovsdbapp.backend.ovs_idl import command

    class ZonectlSyncCommand(_SyncCommandMixin, command.BaseCommand):
        pass

    return ZonectlSyncCommand


# ----- public entry points --------------------------------------------------------------------------

def sync(
    nb: NbClient,
    rules: RuleSet | Iterable[Rule],
    settings: SyncSettings,
    *,
    mode: SyncMode = "repair",
    keep_policies: Collection[str] = (),
) -> SyncReport:
    """Make zonectl's NB rows equal to ``rules`` (mode repair) or report the difference (mode log).

    ``rules`` is the complete compiled rule set (priorities are ranked over all of it). Rows of policies in
    ``keep_policies`` (e.g. ones that currently fail to compile) are left exactly as they are. Mode off
    does nothing. A plan that would remove enforcement because its inputs match nothing is refused
    (``guards.SelectionError``, nothing written). Raises OvnError if OVN refuses, or times out before the
    transaction was sent: then NB is unchanged (one transaction); ``OutcomeUnknown`` if it was sent and no
    answer came: then NB may hold it or not (the next sync re-reads NB and re-plans).
    """
    if mode not in DRIFT_MODES:
        raise ValidationError(f"mode {mode!r} is not one of {', '.join(DRIFT_MODES)}", source="ovn sync")
    report = SyncReport(mode)
    if mode == "off":
        return report
    started = time.monotonic()
    nb.refresh_schema()  # after a reconnect: an upgraded server may have gained ACL tiers
    settings = settings.for_schema(nb.has_tier)
    rules = list(rules)
    # Fail before touching NB if the rules cannot be placed (e.g. the priority band is too small).
    assign_priorities(rules, settings.acl)
    cmd = _command_class()(nb.api, rules, settings, mode == "repair", keep_policies)
    try:
        if mode == "repair":
            with nb.api.transaction(check_error=True, log_errors=False) as txn:
                txn.add(cmd)
        else:
            with nb.locked():
                cmd.run_idl(None)
    except Exception as exc:  # a refusal, or ovsdbapp's TimeoutException, RuntimeError("OVSDB Error: ..."), ...
        if cmd.abandon():  # an earlier try was sent (then the connection broke): its fate is not known here
            plan = next(a.plan for a in cmd.attempts if a.sent)
            raise OutcomeUnknown(nb.settings.remote, brief(exc), plan.changes) from exc
        if isinstance(exc, ZonectlError):
            raise
        raise OvnError(f"OVN NB sync failed ({nb.settings.remote}), nothing was sent, NB unchanged: {brief(exc)}") from exc
    final = cmd.attempts[-1]
    plan = final.plan
    report.desired, report.owned_before, report.switches = final.desired, final.owned, final.switches
    report.changes = plan.changes
    report.applied = mode == "repair" and not plan.empty
    earlier = [a for a in cmd.attempts[:-1] if a.sent]
    if earlier:
        # The connection was lost after a transaction was sent; ovsdbapp re-planned on the re-read cache.
        if plan.empty:
            report.changes, report.applied = earlier[-1].plan.changes, True
            report.note = "the connection was lost after the transaction was sent; NB re-read on reconnect: it had applied it"
        else:
            report.note = ("the connection was lost after the transaction was sent; NB re-read on reconnect: it had not "
                           "applied it, so it was sent again and applied")
    report.elapsed = time.monotonic() - started
    for change in report.changes:
        LOG.info("ovn %s: %s", "applied" if report.applied else "would", change)
    return report


class OutcomeUnknown(OvnError):
    """The transaction was sent to NB and no answer came (the server died, hung, or the connection broke):
    NB may or may not have applied it. Not "NB unchanged": re-read NB (a new connection, the next sync)."""

    exit_status = 3  # the CLI's: neither done (0) nor refused with nothing changed (2)

    def __init__(self, remote: str, cause: str, changes: list[Change], detail: str = "") -> None:
        self.remote = remote
        self.cause = cause
        self.changes = changes
        super().__init__(f"OVN NB sync outcome unknown ({remote}): the transaction ({len(changes)} changes) was sent "
                         f"and no answer came ({cause}); NB may or may not have applied it" + (f"; {detail}" if detail else ""))


def remove_policy(nb: NbClient, policy: str, settings: SyncSettings, *, mode: SyncMode = "repair") -> SyncReport:
    """Delete exactly the rows of one policy ("namespace/name"); every other owned row stays as it is."""
    with nb.locked():
        owned = owned_acls(nb.api.tables, settings.acl.controller)
    others = {k for k in (r.external_ids.get(POLICY_KEY) for r in owned) if k and k != policy}
    return sync(nb, [], settings, mode=mode, keep_policies=others)
