"""Who may write a SecurityZonePolicy for a zone: the rule that stops privilege escalation.

A policy's rules always have one of its governed zones (``spec.zones``) as the local side, so a policy
can only open or close traffic *of the zones it governs*. The danger is a tenant governing a zone it
does not belong to: a policy in namespace ``web-apps`` that governs ``db`` with ``ingress: Allow from
anywhere`` would open the database zone. Hence:

* a policy in an admin namespace (config ``operator.adminNamespaces``, default ``zonectl-system``) may
  govern any zone, at any priority;
* a policy in any other namespace may govern only zones that namespace may place pods in (the zone's
  ``spec.namespaces`` or ``spec.namespaceSelector``), and only at ``priority >= tenantPriorityFloor``
  (default 100), so an admin's guard rails at priorities below the floor always come first.

Peers are not restricted: ``egress to zone db`` only says what the tenant's own zone may send; whether
``db`` accepts it is decided by ``db``'s own policies (the other side of the wire).

The same check runs in the validating webhook (refuse at ``kubectl apply``) and in the reconciler
(a policy that lost its authority, e.g. its namespace was removed from a zone, is unprogrammed).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..core.errors import Problem
from .config import OperatorSettings
from .zonestate import ZoneState


def authority_problems(body: Mapping[str, Any], state: ZoneState, settings: OperatorSettings) -> list[Problem]:
    """Why the policy's namespace may not govern what it governs (empty list: it may)."""
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    if settings.is_admin(namespace):
        return []
    spec = body.get("spec") or {}
    problems: list[Problem] = []
    zones = spec.get("zones") if isinstance(spec, Mapping) else None
    admin = ", ".join(settings.admin_namespaces) or "none configured"
    for i, zone in enumerate(zones if isinstance(zones, list) else []):
        if not isinstance(zone, str):
            continue
        if state.registry.get(zone) is None:
            problems.append(Problem(f"spec.zones[{i}]", f"zone {zone!r} does not exist (only admin namespaces ({admin}) "
                                                        "may write policies for zones that do not exist yet)"))
            continue
        allowed = state.allows(namespace, zone)
        if allowed is None:
            problems.append(Problem(f"spec.zones[{i}]", f"the labels of namespace {namespace!r} are not known yet; retry"))
        elif not allowed:
            problems.append(Problem(
                f"spec.zones[{i}]",
                f"namespace {namespace!r} may not place pods in zone {zone!r}, so it may not govern it; "
                f"write this policy in an admin namespace ({admin}) or add {namespace!r} to SecurityZone {zone}",
            ))
    priority = spec.get("priority", 500) if isinstance(spec, Mapping) else 500
    if isinstance(priority, int) and not isinstance(priority, bool) and priority < settings.tenant_priority_floor:
        problems.append(Problem(
            "spec.priority",
            f"{priority} is below {settings.tenant_priority_floor}, which is reserved for admin namespaces ({admin}); "
            f"tenant policies use {settings.tenant_priority_floor}..999",
        ))
    return problems
