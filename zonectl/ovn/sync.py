"""Sync = a set difference between the ACL rows the rules want and the rows zonectl owns, in ONE transaction.

    desired - owned  -> create (insert the row, reference it from every node switch)
    owned - desired  -> delete (drop the references; OVSDB garbage-collects the unreferenced ACL)
    both, different  -> update the columns in place (drift repair: an edited row comes back)
    same key twice   -> keep one, delete the duplicates

The diff is computed inside the ovsdbapp command, from the IDL cache of the moment the transaction is
built, so a retried transaction (TRY_AGAIN after a concurrent write) is re-planned, not replayed stale.
Switch rows are OVN-Kubernetes' and only ever *mutated* (insert/delete of our ACL references), never
overwritten, so a concurrent OVN-K write to the same switch is not lost. A plan with no change sends
no transaction at all: a second sync writes nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Network
from typing import Any, Collection, Iterable, Literal, Mapping

from zonectl.core.errors import ValidationError
from zonectl.core.rules import Rule, RuleSet
from zonectl.render.ovn_match import (
    POLICY_KEY,
    AclSettings,
    RenderedAcl,
    acl_key,
    assign_priorities,
    render_exemptions,
    render_rule,
)

from .config import DRIFT_MODES, DriftMode, OvnConfig, parse_ovn
from .connection import NbClient, OvnError, brief
from .state import OwnedAcl, SwitchInfo, SwitchSelector, node_switches, owned_acls

LOG = logging.getLogger(__name__)

SyncMode = DriftMode
# Columns zonectl sets on its rows; anything else someone sets on them is drift, reset to these defaults.
DRIFT_DEFAULTS: dict[str, Any] = {"log": False, "severity": None, "meter": None, "label": 0, "options": {}}


@dataclass(frozen=True)
class SyncSettings:
    """Everything sync needs besides the rules: how rows look, and which switches carry them."""

    acl: AclSettings
    switches: SwitchSelector
    tier: int | None = None  # ovn.tier as configured; ``acl.tier`` is it only while the NB schema has tiers

    @classmethod
    def build(cls, section: Mapping[str, Any], cluster: IPv6Network | None, has_tier: bool) -> "SyncSettings":
        """From the config's ``ovn`` section; ``has_tier`` from the connected server's schema."""
        return cls.from_config(parse_ovn(section), cluster, has_tier)

    @classmethod
    def from_config(cls, ovn: OvnConfig, cluster: IPv6Network | None, has_tier: bool) -> "SyncSettings":
        section = ovn.section
        tier = section.get("tier", 1)
        try:
            wanted = int(tier) if tier is not None else None
            acl = AclSettings(
                controller=str(section.get("controller", "zonectl")),
                tier=wanted if has_tier else None,
                allow_action=str(section.get("allowAction", "allow-related")),
                deny_action=str(section.get("denyAction", "drop")),
                priority_min=int(section.get("priorityMin", 1100)),
                priority_max=int(section.get("priorityMax", 1999)),
            )
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"ovn: tier, priorityMin and priorityMax must be integers ({exc})",
                                  source="config") from None
        names = section.get("switches")
        selector = SwitchSelector(
            cluster=cluster,
            names=tuple(names) if names else None,
            node_port_prefix=str(section.get("nodePortPrefix", "k8s-")),
        )
        return cls(acl, selector, wanted)

    def for_schema(self, has_tier: bool) -> "SyncSettings":
        """These settings for a server whose schema has (or lacks) ACL tiers: an upgrade may add them."""
        tier = self.tier if has_tier else None
        return self if tier == self.acl.tier else replace(self, acl=replace(self.acl, tier=tier))


@dataclass(frozen=True)
class Change:
    kind: Literal["create", "update", "delete", "duplicate", "attach", "detach"]
    key: str
    policy: str | None
    detail: str

    def __str__(self) -> str:
        owner = f" [{self.policy}]" if self.policy else ""
        return f"{self.kind:9} {self.key}{owner} {self.detail}"


@dataclass
class SyncReport:
    """What a sync did (mode repair) or would do (mode log)."""

    mode: str
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    desired: int = 0
    owned_before: int = 0
    switches: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        verb = "applied" if self.applied else ("would apply" if self.changes else "nothing to do")
        head = (f"ovn sync ({self.mode}): {verb}: {self.count('create')} create, {self.count('update')} update, "
                f"{self.count('delete') + self.count('duplicate')} delete, {self.count('attach')} attach, "
                f"{self.count('detach')} detach; {self.desired} desired rows on {len(self.switches)} switches")
        return [head, *(f"  {c}" for c in self.changes)]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "applied": self.applied,
            "desired": self.desired,
            "ownedBefore": self.owned_before,
            "switches": self.switches,
            "changes": [{"kind": c.kind, "key": c.key, "policy": c.policy, "detail": c.detail} for c in self.changes],
        }


# ----- desired state --------------------------------------------------------------------------------

def desired_acls(
    rules: Iterable[Rule], switches: list[SwitchInfo], settings: AclSettings, *, exemptions: bool | None = None
) -> dict[str, RenderedAcl]:
    """key -> the row and the switches that must reference it. Exemptions go wherever rules exist."""
    rules = list(rules)
    names = frozenset(s.name for s in switches)
    prio = assign_priorities(rules, settings)
    out: dict[str, RenderedAcl] = {}
    for r in rules:
        out[r.id] = RenderedAcl(r.id, _full(render_rule(r, prio[r.id], settings)), names)
    if exemptions if exemptions is not None else bool(rules):
        for sw in switches:
            for row in render_exemptions(sw.name, sw.router_ports, sw.node_ports, settings):
                key = acl_key(row["external_ids"])
                assert key is not None
                out[key] = RenderedAcl(key, _full(row), frozenset({sw.name}))
    return out


def _full(row: dict) -> dict:
    return {**DRIFT_DEFAULTS, **row}


# ----- the plan -------------------------------------------------------------------------------------

@dataclass
class Plan:
    creates: list[RenderedAcl] = field(default_factory=list)
    updates: list[tuple[OwnedAcl, dict[str, Any]]] = field(default_factory=list)
    deletes: list[OwnedAcl] = field(default_factory=list)
    attach: list[tuple[Any, str]] = field(default_factory=list)  # (acl uuid, switch)
    detach: list[tuple[Any, str]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes or self.attach or self.detach)


def _differences(actual: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    return {c: v for c, v in desired.items() if c in actual and actual[c] != v}


def _describe(columns: Mapping[str, Any]) -> str:
    tier = f" tier {columns['tier']}" if "tier" in columns else ""
    return f"{columns['direction']} prio {columns['priority']}{tier} {columns['action']} {columns['match']}"


def make_plan(
    desired: Mapping[str, RenderedAcl],
    owned: list[OwnedAcl],
    *,
    keep_policies: Collection[str] = (),
    schema_columns: Collection[str] | None = None,
) -> Plan:
    plan = Plan()
    by_key: dict[str | None, list[OwnedAcl]] = {}
    for row in owned:
        by_key.setdefault(row.key, []).append(row)

    def keep(row: OwnedAcl) -> bool:
        return row.external_ids.get(POLICY_KEY) in keep_policies

    for key, rows in by_key.items():
        if key is None or key not in desired:
            for row in rows:
                if keep(row):
                    continue
                plan.deletes.append(row)
                plan.changes.append(Change("delete", key or str(row.uuid), row.external_ids.get(POLICY_KEY),
                                           _describe(row.columns)))
    for key, want in desired.items():
        columns = {c: v for c, v in want.columns.items() if schema_columns is None or c in schema_columns}
        rows = by_key.get(key, [])
        if not rows:
            plan.creates.append(RenderedAcl(key, columns, want.switches))
            plan.changes.append(Change("create", key, want.policy, _describe(columns)))
            continue
        # Keep the row closest to what we want; the rest are duplicates.
        rows = sorted(rows, key=lambda r: (len(_differences(r.columns, columns)), -len(r.switches & want.switches),
                                           str(r.uuid)))
        best, dups = rows[0], rows[1:]
        for dup in dups:
            plan.deletes.append(dup)
            plan.changes.append(Change("duplicate", key, want.policy, f"extra row {dup.uuid}"))
        if keep(best):
            diff = {}
        else:
            diff = _differences(best.columns, columns)
        if diff:
            plan.updates.append((best, diff))
            was = ", ".join(f"{c}={best.columns.get(c)!r}" for c in sorted(diff))
            plan.changes.append(Change("update", key, want.policy, f"{_describe(columns)} (was {was})"))
        for sw in sorted(want.switches - best.switches):
            plan.attach.append((best.uuid, sw))
            plan.changes.append(Change("attach", key, want.policy, f"to switch {sw}"))
        for sw in sorted(best.switches - want.switches):
            plan.detach.append((best.uuid, sw))
            plan.changes.append(Change("detach", key, want.policy, f"from switch {sw}"))
    return plan


# ----- the command ----------------------------------------------------------------------------------

class _SyncCommandMixin:
    """Plans from the live cache inside the transaction, then (if ``write``) applies the plan to ``txn``."""

    def __init__(self, api, rules: list[Rule], settings: SyncSettings, write: bool, keep_policies: Collection[str]):
        super().__init__(api)  # type: ignore[call-arg]
        self.rules = rules
        self.settings = settings
        self.write = write
        self.keep_policies = frozenset(keep_policies)
        self.report_data: tuple[Plan, int, int, list[str]] | None = None

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
        plan = make_plan(desired, owned, keep_policies=self.keep_policies,
                         schema_columns=tables["ACL"].columns.keys())
        self.report_data = (plan, len(desired), len(owned), [s.name for s in switches])
        self.result = plan
        if self.write and txn is not None and not plan.empty:
            _apply(txn, tables, plan)


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
    does nothing. Raises OvnError if OVN refuses or times out; then NB is unchanged (one transaction).
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
            with nb.lock:
                cmd.run_idl(None)
    except (ValidationError, OvnError):
        raise
    except Exception as exc:  # ovsdbapp: TimeoutException, RuntimeError("OVSDB Error: ..."), ...
        raise OvnError(f"OVN NB sync failed ({nb.settings.remote}): {brief(exc)}") from exc
    assert cmd.report_data is not None
    plan, report.desired, report.owned_before, report.switches = cmd.report_data
    report.changes = plan.changes
    report.applied = mode == "repair" and not plan.empty
    report.elapsed = time.monotonic() - started
    for change in report.changes:
        LOG.info("ovn %s: %s", "applied" if report.applied else "would", change)
    return report


def remove_policy(nb: NbClient, policy: str, settings: SyncSettings, *, mode: SyncMode = "repair") -> SyncReport:
    """Delete exactly the rows of one policy ("namespace/name"); every other owned row stays as it is."""
    with nb.lock:
        owned = owned_acls(nb.api.tables, settings.acl.controller)
    others = {k for k in (r.external_ids.get(POLICY_KEY) for r in owned) if k and k != policy}
    return sync(nb, [], settings, mode=mode, keep_policies=others)
