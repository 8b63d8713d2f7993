"""The plan of a sync: the set difference between the ACL rows the rules want and the rows zonectl owns.

    desired - owned  -> create (insert the row, reference it from every node switch)
    owned - desired  -> delete (drop the references; OVSDB garbage-collects the unreferenced ACL)
    both, different  -> update the columns in place (drift repair: an edited row comes back)
    same key twice   -> keep one, delete the duplicates

Pure: it reads rows already taken from the cache and returns what to change (``sync`` applies it in one
transaction). ``SyncReport`` is what a sync did or would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Literal, Mapping

from zonectl.core.rules import Rule
from zonectl.render.ovn_match import (
    POLICY_KEY,
    AclSettings,
    RenderedAcl,
    acl_key,
    assign_priorities,
    render_exemptions,
    render_rule,
)

from .state import OwnedAcl, SwitchInfo

# Columns zonectl sets on its rows; anything else someone sets on them is drift, reset to these defaults.
DRIFT_DEFAULTS: dict[str, Any] = {"log": False, "severity": None, "meter": None, "label": 0, "options": {}}


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
    note: str = ""  # e.g. the connection was lost after the transaction was sent, and NB was re-read

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
        return [head + (f" ({self.note})" if self.note else ""), *(f"  {c}" for c in self.changes)]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "note": self.note,
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
