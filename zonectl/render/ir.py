"""The compiled rules as JSON: what `zonectl compile --target ir` prints, for review and for diffing.

Every backend renders from this IR, so seeing it is the shortest way to tell a policy problem from a
backend problem. Keys are stable and sorted; matches are always ``value/mask`` text (normalised).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..core.rules import Rule
from . import checks


def rule_dict(rule: Rule) -> dict[str, Any]:
    checks.rule(rule)
    return {
        "id": rule.id,
        "policy": rule.policy,
        "name": rule.name,
        "zone": rule.zone,
        "direction": rule.direction,
        "action": rule.action,
        "order": rule.order,
        "src": rule.src.text if rule.src else None,
        "dst": rule.dst.text if rule.dst else None,
        "protocol": rule.protocol,
        "ports": rule.ports_text or None,
        "icmpType": rule.icmp_type,
        "nat64": rule.nat64,
        "default": rule.is_default,
    }


def render_ir(rules: Iterable[Rule]) -> str:
    return json.dumps([rule_dict(r) for r in rules], indent=2, sort_keys=True) + "\n"
