"""Compiled rules -> OVN Northbound ACL rows (pure: dicts of column values, no ovsdbapp).

Where the rows live, and why: every zone rule has a zone mask on its local side and an address match
(a zone mask, a CIDR or nothing) on the other, so a rule is a pure function of the packet's addresses
and ports. One ACL row per rule is shared by every node switch: its OpenFlow cost is a couple of flows
per switch, whatever the number of pods, and no pod event ever touches it. Egress rules are
``from-lport`` (judged where the packet enters the fabric, at the source pod's port); ingress rules are
``to-lport`` (judged at the destination pod's port).

A packet that crosses nodes also passes the router port of each node switch, where OVN skips conntrack.
Judged there, statelessly, the reply of an allowed connection would hit the other zone's default deny.
So each switch gets small exemption rows of its own: traffic entering from or leaving to a router port
(and, like OVN-Kubernetes does, traffic from the node's management port to pods: kubelet probes) is not
judged by zonectl at that port. Every packet is still judged once per direction, at a pod port, where
conntrack lets replies back.

Priorities. OVN >= 23.06 has an ACL ``tier`` column: zonectl writes tier 1 (configurable), before
NetworkPolicy (tier 2). Older schemas have one priority space, so zonectl uses a band above
NetworkPolicy (1000-1001) and multicast (1011-1013), below egress firewall (2000+) and ANP (20100+):
1100-1999 by default, exemptions at the top. BaselineAdminNetworkPolicy (1651-1750) only exists in
OVN-Kubernetes versions that require ACL tiers, where it sits in tier 3 and priorities of different tiers
never compete; on a tier-less schema the band has no BANP to collide with. Rules of different zones never overlap (their local zone
masks differ), so ranks are assigned per (zone, direction): a policy for one zone never renumbers
another zone's rows.

What Allow means. Without tiers there is one priority space, so a zonectl Allow (``allow-related``) is
final, like an AdminNetworkPolicy Allow: a namespace's NetworkPolicy cannot narrow traffic a zone policy
allows (zonectl's Deny always wins over NetworkPolicy). With tiers, ``ovn.allowAction: pass`` makes Allow
mean "the zone policy does not object": NetworkPolicy (tier 2) still decides. Exemption rows always
``pass`` when tiers exist, so zonectl never decides anything at a router port.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from zonectl.core.errors import ValidationError
from zonectl.core.rules import Rule, RuleSet

from . import checks

# OVN-Kubernetes' keys (go-controller/pkg/libovsdb/ops/db_object_ids.go). At start-up ovnkube-controller
# deletes ACLs without an owner-controller and keeps those owned by other controllers untouched.
OWNER_CONTROLLER_KEY = "k8s.ovn.org/owner-controller"
OWNER_TYPE_KEY = "k8s.ovn.org/owner-type"
OBJECT_NAME_KEY = "k8s.ovn.org/name"
PRIMARY_ID_KEY = "k8s.ovn.org/id"
# zonectl's own keys.
ROLE_KEY = "zonectl.io/role"  # "rule" | "exempt"
POLICY_KEY = "zonectl.io/policy"  # "namespace/name"
RULE_KEY = "zonectl.io/rule"  # the compiled rule id (content hash)
GENERATION_KEY = "zonectl.io/generation"
ZONE_KEY = "zonectl.io/zone"
RULE_NAME_KEY = "zonectl.io/rule-name"
SWITCH_KEY = "zonectl.io/switch"
EXEMPT_KEY = "zonectl.io/exempt"  # which exemption: from-router | to-router | from-node

OWNER_TYPE = "SecurityZonePolicy"
OWNER_TYPE_NODE = "ZonectlNode"
ACL_NAME_MAX = 63  # NB schema limit on ACL.name
DEFAULT_CONTROLLER = "zonectl"

ALLOW_ACTIONS = ("allow-related", "allow", "pass")
# Never "reject": OVN-Kubernetes' services controller deletes every reject ACL on logical switches (its repair
# of the ones it wrote for services without endpoints), which would silently take zonectl's Deny rules away.
DENY_ACTIONS = ("drop",)


@dataclass(frozen=True)
class AclSettings:
    """How rules become ACL rows. ``tier=None`` means the NB schema has no ``tier`` column."""

    controller: str = DEFAULT_CONTROLLER
    tier: int | None = None
    allow_action: str = "allow-related"
    deny_action: str = "drop"
    priority_min: int = 1100
    priority_max: int = 1999

    def __post_init__(self) -> None:
        problems = []
        if self.allow_action not in ALLOW_ACTIONS:
            problems.append(f"ovn.allowAction {self.allow_action!r} is not one of {', '.join(ALLOW_ACTIONS)}")
        if self.allow_action == "pass" and self.tier is None:
            problems.append("ovn.allowAction 'pass' needs an NB schema with ACL tiers (OVN >= 23.06)")
        if self.deny_action not in DENY_ACTIONS:
            problems.append(f"ovn.denyAction {self.deny_action!r} is not one of {', '.join(DENY_ACTIONS)}")
        if self.tier is not None and not 0 <= self.tier <= 3:
            problems.append(f"ovn.tier {self.tier} must be 0..3")
        if not 0 <= self.priority_min < self.priority_max <= 32767:
            problems.append(f"ovn priority band {self.priority_min}-{self.priority_max} must be inside 0-32767")
        if not isinstance(self.controller, str) or not checks.TOKEN.fullmatch(self.controller):
            problems.append(f"ovn.controller {self.controller!r} must be 1-63 of A-Z a-z 0-9 _ . -")
        if problems:
            raise ValidationError("; ".join(problems), source="config: ovn")

    @property
    def exempt_action(self) -> str:
        """With tiers, "pass": zonectl does not judge there, later tiers (NetworkPolicy) still do."""
        return "pass" if self.tier is not None else "allow-related"


def _addr(field_name: str, match) -> str:
    return f"{field_name} == {match.cidr_or_mask}"


def _l4(rule: Rule) -> list[str]:
    proto = rule.protocol
    if proto is None:
        return []
    if proto == "icmpv6":
        return [f"icmp6.type == {rule.icmp_type}"] if rule.icmp_type is not None else ["icmp6"]
    if rule.port_min is None:
        return [proto]
    if rule.port_max is None or rule.port_max == rule.port_min:
        return [f"{proto}.dst == {rule.port_min}"]
    return [f"{proto}.dst >= {rule.port_min}", f"{proto}.dst <= {rule.port_max}"]


def rule_match(rule: Rule) -> str:
    """The OVN match of one rule: ``ip6.src == <mask> && ip6.dst == <mask> && tcp.dst == 443``.

    Contiguous masks are written as ``addr/len`` (what ovn-nbctl shows back), wildcards as ``addr/mask``.
    """
    checks.rule(rule)
    terms: list[str] = []
    if rule.src is not None and not rule.src.is_any:
        terms.append(_addr("ip6.src", rule.src))
    if rule.dst is not None and not rule.dst.is_any:
        terms.append(_addr("ip6.dst", rule.dst))
    terms.extend(_l4(rule))
    return " && ".join(terms) if terms else "ip6"


def acl_direction(rule: Rule) -> str:
    return "from-lport" if rule.direction == "egress" else "to-lport"


def assign_priorities(rules: Iterable[Rule], settings: AclSettings) -> dict[str, int]:
    """Rule id -> ACL priority: distinct ``order`` values ranked per (zone, direction), top of the band first.

    The band's top priority is kept for the exemption rows.
    """
    orders: dict[tuple[str, str], set[int]] = defaultdict(set)
    rules = list(rules)
    for r in rules:
        orders[(r.zone, r.direction)].add(r.order)
    room = settings.priority_max - settings.priority_min  # priorities left below the exemptions
    rank: dict[tuple[str, str, int], int] = {}
    for key, values in orders.items():
        if len(values) > room:
            raise ValidationError(
                f"zone {key[0]} {key[1]}: {len(values)} distinct rule orders do not fit the OVN priority band "
                f"{settings.priority_min}-{settings.priority_max - 1}; widen it (ovn.priorityMin/priorityMax)",
                source="ovn",
            )
        for i, order in enumerate(sorted(values)):
            rank[(key[0], key[1], order)] = settings.priority_max - 1 - i
    return {r.id: rank[(r.zone, r.direction, r.order)] for r in rules}


def _name(*parts: str) -> str:
    return ":".join(p for p in parts if p)[:ACL_NAME_MAX]


def _owner_ids(settings: AclSettings, owner_type: str, name: str, primary: str) -> dict[str, str]:
    return {
        OWNER_CONTROLLER_KEY: settings.controller,
        OWNER_TYPE_KEY: owner_type,
        OBJECT_NAME_KEY: name,
        PRIMARY_ID_KEY: f"{settings.controller}:{owner_type}:{primary}",
    }


def render_rule(rule: Rule, priority: int, settings: AclSettings) -> dict:
    """One ACL row (column -> value) for one compiled rule."""
    checks.rule(rule)
    checks.integer(priority, f"rule {rule.id} priority", 0, 32767)
    namespace, _, name = rule.policy.partition("/")
    ids = _owner_ids(settings, OWNER_TYPE, f"{namespace}:{name}", rule.id)
    ids.update(
        {
            ROLE_KEY: "rule",
            POLICY_KEY: rule.policy,
            RULE_KEY: rule.id,
            GENERATION_KEY: str(rule.generation),
            ZONE_KEY: rule.zone,
            RULE_NAME_KEY: rule.name,
        }
    )
    row = {
        "direction": acl_direction(rule),
        "priority": priority,
        "match": rule_match(rule),
        "action": settings.allow_action if rule.action == "allow" else settings.deny_action,
        "name": _name("zonectl", rule.policy, rule.name),
        "external_ids": ids,
    }
    if settings.tier is not None:
        row["tier"] = settings.tier
    return row


def render_ruleset(ruleset: RuleSet | Iterable[Rule], settings: AclSettings) -> list[dict]:
    """Every rule's ACL row, in the rule set's order."""
    rules = list(ruleset)
    prio = assign_priorities(rules, settings)
    return [render_rule(r, prio[r.id], settings) for r in rules]


def _ports(field_name: str, ports: Sequence[str]) -> str:
    quoted = [f'"{p}"' for p in sorted(ports)]
    return f"{field_name} == {quoted[0]}" if len(quoted) == 1 else f"{field_name} == {{{', '.join(quoted)}}}"


def render_exemptions(
    switch: str, router_ports: Sequence[str], node_ports: Sequence[str], settings: AclSettings
) -> list[dict]:
    """The per-switch rows that keep zonectl from judging packets at router ports (and host -> pod)."""
    checks.pattern(switch, checks.OVN_NAME, "switch", "an OVN switch name")
    for p in (*router_ports, *node_ports):
        checks.pattern(p, checks.OVN_NAME, f"switch {switch} port", "an OVN port name")
    rows: list[dict] = []

    def add(kind: str, direction: str, match: str) -> None:
        ids = _owner_ids(settings, OWNER_TYPE_NODE, switch, f"{switch}:{kind}")
        ids.update({ROLE_KEY: "exempt", SWITCH_KEY: switch, EXEMPT_KEY: kind})
        row = {
            "direction": direction,
            "priority": settings.priority_max,
            "match": match,
            "action": settings.exempt_action,
            "name": _name("zonectl", "exempt", kind, switch),
            "external_ids": ids,
        }
        if settings.tier is not None:
            row["tier"] = settings.tier
        rows.append(row)

    if router_ports:
        add("from-router", "from-lport", _ports("inport", router_ports))
        add("to-router", "to-lport", _ports("outport", router_ports))
    if node_ports:
        add("from-node", "to-lport", _ports("inport", node_ports))
    return rows


def acl_key(external_ids: Mapping[str, str]) -> str | None:
    """The identity sync diffs on: the rule id, or ``exempt:<switch>:<kind>``; None if not zonectl's."""
    role = external_ids.get(ROLE_KEY)
    if role == "rule" and external_ids.get(RULE_KEY):
        return external_ids[RULE_KEY]
    if role == "exempt" and external_ids.get(SWITCH_KEY) and external_ids.get(EXEMPT_KEY):
        return f"exempt:{external_ids[SWITCH_KEY]}:{external_ids[EXEMPT_KEY]}"
    return None


@dataclass(frozen=True)
class RenderedAcl:
    """A desired ACL row and the switches that must reference it (its identity is ``key``)."""

    key: str
    columns: Mapping[str, object]
    switches: frozenset[str] = field(default_factory=frozenset)

    @property
    def policy(self) -> str | None:
        ids = self.columns.get("external_ids")
        return ids.get(POLICY_KEY) if isinstance(ids, Mapping) else None
