"""Kubernetes-style status conditions, built as plain dicts (the CRDs' ``status.conditions`` schema).

Why keep ``lastTransitionTime`` from the previous status: it must say when the condition last *changed*,
not when the controller last looked, or every resync would look like a flap to alerting.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

MESSAGE_LIMIT = 32768  # the CRD schema's maxLength for condition messages


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def render_conditions(
    conditions: Iterable[Condition], previous: Any, generation: int | None, now: str | None = None
) -> list[dict[str, Any]]:
    """Conditions as status dicts; a condition whose status did not change keeps its transition time."""
    before: dict[str, Mapping[str, Any]] = {}
    for c in previous if isinstance(previous, list) else []:
        if isinstance(c, Mapping) and isinstance(c.get("type"), str):
            before[c["type"]] = c
    stamp = now or now_rfc3339()
    out: list[dict[str, Any]] = []
    for c in conditions:
        old = before.get(c.type)
        changed = old is None or old.get("status") != c.status_text
        item: dict[str, Any] = {
            "type": c.type,
            "status": c.status_text,
            "reason": c.reason,
            "message": c.message[:MESSAGE_LIMIT],
            "lastTransitionTime": stamp if changed else old.get("lastTransitionTime", stamp),  # type: ignore[union-attr]
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def with_condition(previous: Any, condition: Condition, generation: int | None,
                   now: str | None = None) -> list[dict[str, Any]]:
    """The ``previous`` conditions with ``condition`` in place of the one of its type (or added)."""
    items = [dict(c) for c in previous if isinstance(c, Mapping)] if isinstance(previous, list) else []
    rendered = render_conditions([condition], items, generation, now)[0]
    out = [rendered if c.get("type") == condition.type else c for c in items]
    return out if rendered in out else [*out, rendered]


def find(conditions: Any, type_: str) -> Mapping[str, Any] | None:
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def same_status(current: Mapping[str, Any] | None, wanted: Mapping[str, Any], keys: Iterable[str]) -> bool:
    """True when patching ``wanted`` would change nothing the schema keeps (timestamps aside)."""
    current = current or {}
    for key in keys:
        if key == "conditions":
            a = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in current.get(key) or []]
            b = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in wanted.get(key) or []]
            if a != b:
                return False
        elif current.get(key) != wanted.get(key):
            return False
    return True
