"""Refusals that keep a sync from removing enforcement because its inputs match nothing.

A sync is a set difference, so a selection or rule set that matches nothing does not fail by itself: it
detaches every row (no node switch selected), deletes every row (no rules), or quietly takes the rows
off some nodes (a typo in ``ovn.switches``, another cluster's prefix). Each check here runs on the plan
inside the transaction, from the same cache snapshot, before anything is written; a refusal is one
``SelectionError`` (exit status 2 in the CLI, a failed round in the daemons) and NB stays as it is.

"Last good" needs no memory of its own: the node switches that reference zonectl's rows right now are
the ones the last applied sync attached them to (a switch OVN-K deleted took its references with it, so
nodes that really went away do not count as a drop). It lives in NB, with the rows, for every writer
(CLI, controller, each node agent) and across restarts, and it costs no key on any row zonectl does not own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from zonectl.core.errors import ValidationError

from .state import OwnedAcl, SwitchInfo, SwitchSelector, reserved, switch_reasons

SHOWN = 4  # switches named in a message; the rest are counted


class SelectionError(ValidationError):
    """The sync would remove enforcement because its inputs match nothing (or too little); nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, source="ovn")


@dataclass(frozen=True)
class Limits:
    """What a sync may do that removes enforcement: ``max_switch_drop`` (a fraction of the switches carrying
    zonectl's rows now that it may leave) and ``allow_empty`` (delete every row zonectl owns)."""

    max_switch_drop: float = 0.0
    allow_empty: bool = False


def _some(items: Sequence[str]) -> str:
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def check(tables: Mapping[str, Any], selector: SwitchSelector, switches: Sequence[SwitchInfo],
          owned: Sequence[OwnedAcl], desired: int, limits: Limits) -> None:
    """Raise SelectionError if writing the plan (``desired`` rows on ``switches``) would remove enforcement."""
    if selector.names is not None:
        _check_names(tables, selector)
    if not desired:
        if owned and not limits.allow_empty:
            raise SelectionError(
                f"the rule set is empty: this sync would delete all {len(owned)} rows zonectl owns and leave every "
                "zone unfiltered; nothing was written (to remove every zone rule on purpose: --allow-empty, or "
                "ovn.allowEmpty: true for the controller and the node agents)")
        return
    if not switches:
        raise SelectionError(f"no node switch is selected, so no zone rule could be enforced: {_why_none(tables, selector)}; "
                             "nothing was written")
    if selector.zone_offset is not None:
        for sw in switches:
            if sw.subnet is not None and sw.subnet.prefixlen > selector.zone_offset:
                raise SelectionError(
                    f"node switch {sw.name} has the pod subnet {sw.subnet}, whose fixed bits include the zone field "
                    f"(layout.zoneField starts at bit {selector.zone_offset}): the zone masks cannot match its pods; "
                    "check layout.nodePrefixLength and zoneField against OVN-K's node subnets; nothing was written")
    carrying = sorted({name for row in owned for name in row.switches})
    selected = {sw.name for sw in switches}
    dropped = [name for name in carrying if name not in selected]
    if dropped and len(dropped) > limits.max_switch_drop * len(carrying):
        why = switch_reasons(tables, selector)
        shown = [f"{name} ({why.get(name, 'not selected')})" for name in dropped]
        raise SelectionError(
            f"this sync would take zonectl's rows off {len(dropped)} of the {len(carrying)} node switches that carry "
            f"them now, which still exist but are no longer selected: {_some(shown)}; nothing was written (if that "
            f"is intended: --allow-switch-drop, or ovn.maxSwitchDrop above {len(dropped) / len(carrying):.2f}, now "
            f"{limits.max_switch_drop:g})")


def _check_names(tables: Mapping[str, Any], selector: SwitchSelector) -> None:
    rows = {row.name: row for row in tables["Logical_Switch"].rows.values()}
    assert selector.names is not None
    for name in selector.names:
        row = rows.get(name)
        if row is not None and reserved(row):
            raise SelectionError(f"ovn.switches names {name}, {reserved(row)}: zonectl's rows belong on "
                                 "default-network node switches only; nothing was written")
    missing = [n for n in selector.names if n not in rows]
    if missing and (selector.names_must_exist or len(missing) == len(selector.names)):
        raise SelectionError(f"ovn.switches names {len(missing)} switch(es) this NB does not have: {_some(missing)} "
                             f"(it has {len(rows)}: {_some(sorted(rows)) or 'none'}); nothing was written")


def _why_none(tables: Mapping[str, Any], selector: SwitchSelector) -> str:
    reasons = switch_reasons(tables, selector)
    if not reasons:
        return "this NB has no logical switch at all (is OVN-Kubernetes running, and is this its NB?)"
    return f"none of the {len(reasons)} switches in this NB is one: " + _some([f"{n} ({r})" for n, r in reasons.items()])
