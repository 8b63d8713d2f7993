"""Compiled rules: the backend-neutral IR every enforcement point renders from.

One ``Rule`` is one (source match, destination match, protocol/ports, action) with a sort key and a
stable id derived from its content and owner. Because the id is a content hash, a backend keeps
itself in sync with a plain set difference: ids wanted but not present are created, ids present
but not wanted are deleted; an unchanged policy recompiles to exactly the same ids.

Ordering: ``order`` is a sort key, lower first. It is built from the policy priority (0-999), the
rule's position in the policy, and the action (Deny before Allow on a tie), so rules of different
policies interleave predictably; a policy holds at most ``POSITIONS`` rules per direction, or its
positions would run into the next priority. Each policy's ``defaultAction`` compiles to a per-zone
default rule per direction after every explicit rule (an unwritten direction is Deny); Deny defaults
sort before Allow defaults, so when two policies of a zone disagree the zone stays closed. Backends
map the distinct ``order`` values onto their own priority ranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from .errors import Collector, Problem, ValidationError, parse_each
from .layout import AddrMatch
from .nat64 import Nat64Prefix
from .policy import Action, Direction, Peer, Policy, PolicyRule, PortSpec, Protocol, parse_policy
from .zones import ZoneRegistry

RULES_PER_POLICY_LIMIT = 10_000
POSITIONS = 1000  # rules per direction of one policy: the ``order`` formula gives each priority this many
DEFAULT_ORDER_BASE = 2 * (1000 * POSITIONS + 1000)  # after every explicit rule of every priority


@dataclass(frozen=True)
class Rule:
    """One compiled rule. ``src``/``dst`` None means any address."""

    id: str
    policy: str  # "namespace/name" of the owning SecurityZonePolicy
    zone: str  # the zone the policy governs (the local side)
    direction: Direction  # egress: traffic leaving the zone; ingress: traffic entering it
    action: Action
    order: int
    src: AddrMatch | None
    dst: AddrMatch | None
    protocol: Protocol | None = None
    port_min: int | None = None
    port_max: int | None = None
    icmp_type: int | None = None
    nat64: bool = False  # the remote side lies in (or includes) the NAT64 prefix: the gateway enforces it
    is_default: bool = False
    name: str = ""  # rule name inside its policy, for comments and status
    generation: int = 0

    @property
    def remote(self) -> AddrMatch | None:
        return self.dst if self.direction == "egress" else self.src

    @property
    def ports_text(self) -> str:
        if self.port_min is None:
            return ""
        return str(self.port_min) if self.port_max in (None, self.port_min) else f"{self.port_min}-{self.port_max}"

    def describe(self) -> str:
        proto = self.protocol or "any"
        ports = f"/{self.ports_text}" if self.ports_text else ""
        icmp = f" type {self.icmp_type}" if self.icmp_type is not None else ""
        return (
            f"{self.action} {self.direction} {self.src.text if self.src else 'any'} -> "
            f"{self.dst.text if self.dst else 'any'} {proto}{ports}{icmp}"
        )


@dataclass(frozen=True)
class RuleSet:
    """The compiled rules of a set of policies, sorted by (order, id)."""

    rules: tuple[Rule, ...]
    policies: tuple[str, ...] = ()

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.rules)

    def for_policy(self, key: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.policy == key)

    def for_gateway(self) -> tuple[Rule, ...]:
        """Egress rules that concern traffic to the NAT64 prefix (what the egress gateway enforces)."""
        return tuple(r for r in self.rules if r.direction == "egress" and r.nat64)

    def zones(self) -> tuple[str, ...]:
        return tuple(sorted({r.zone for r in self.rules}))

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)


def _canonical(value: object) -> str | int | None:
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, AddrMatch):
        return value.text
    raise TypeError(f"rule_id: {type(value).__name__} has no canonical form")


def rule_id(*fields: object) -> str:
    """A short, stable content hash: the same rule always gets the same id, a changed rule a new one.

    The hash is over a canonical text (a compact JSON list of strings, integers and nulls; matches as
    ``value/mask``), never over ``repr()`` of objects: a field added to a dataclass must not change
    every id, since a changed id makes every backend delete and re-create the row.
    """
    text = json.dumps([_canonical(v) for v in fields], separators=(",", ":"))
    return "r" + hashlib.sha256(text.encode()).hexdigest()[:15]


def _order(priority: int, index: int, action: Action) -> int:
    return (priority * 1000 + index) * 2 + (0 if action == "deny" else 1)  # index < POSITIONS


def _peer_matches(peer: Peer, registry: ZoneRegistry, nat64: Nat64Prefix | None) -> list[AddrMatch | None]:
    if peer.kind == "zone":
        assert peer.zone is not None
        return [registry.match(peer.zone, peer.scope)]
    if peer.kind == "cidr":
        if peer.match is None or peer.match.is_any:
            raise ValidationError("a cidr peer needs a match narrower than every address (any peer is {any: true})")
        return [peer.match]
    if peer.kind == "any":
        return [None]
    if peer.kind != "nat64":
        raise ValidationError(f"unknown peer kind {peer.kind!r}")
    if nat64 is None:
        raise ValidationError("nat64 peers need a NAT64 prefix in the config (nat64.prefix)")
    if not peer.ipv4:  # never "every IPv4 address": that is spelled 0.0.0.0/0 (nat64: {any: true})
        raise ValidationError("a nat64 peer needs at least one IPv4 network")
    return [nat64.embed_network(net) for net in peer.ipv4]


def _in_nat64(match: AddrMatch | None, nat64: Nat64Prefix | None) -> bool:
    if nat64 is None:
        return False
    prefix = nat64.match()
    return match is None or prefix.covers(match) or match.covers(prefix)


def compile_policy(policy: Policy, registry: ZoneRegistry, nat64: Nat64Prefix | None) -> tuple[Rule, ...]:
    """All rules of one policy, or a ValidationError (never a partial list)."""
    out: list[Rule] = []
    errs = Collector()
    _check_shape(policy, errs)
    errs.raise_if_any(f"SecurityZonePolicy {policy.key}")
    for zone_name in policy.zones:
        local = registry.match(zone_name, "cluster")
        sides: tuple[tuple[Direction, tuple[PolicyRule, ...]], ...] = (("ingress", policy.ingress), ("egress", policy.egress))
        for direction, rules in sides:
            peer_key = "from" if direction == "ingress" else "to"
            for index, rule in enumerate(rules):
                remotes: list[AddrMatch | None] = []
                for j, peer in enumerate(rule.peers):
                    try:
                        remotes.extend(_peer_matches(peer, registry, nat64))
                    except ValidationError as exc:
                        errs.extend(exc, f"spec.{direction}[{index}].{peer_key}[{j}]")
                for remote in dict.fromkeys(remotes):
                    for port in rule.ports:
                        out.append(_make(policy, zone_name, direction, rule.name, rule.action,
                                         _order(policy.priority, index, rule.action), local, remote, port, nat64))
        defaults: tuple[tuple[Direction, Action | None], ...] = (
            ("ingress", policy.default_ingress), ("egress", policy.default_egress))
        for direction, default in defaults:
            action: Action = default or "deny"  # no default (a hand-made Policy) is Deny: a zone never opens by omission
            order = DEFAULT_ORDER_BASE + (0 if action == "deny" else 1)
            out.append(_make(policy, zone_name, direction, f"default-{direction}", action, order, local, None,
                             None, nat64, is_default=True))
    if len(out) > RULES_PER_POLICY_LIMIT:
        errs.add("spec", f"compiles to {len(out)} rules, more than the limit of {RULES_PER_POLICY_LIMIT}")
    errs.raise_if_any(f"SecurityZonePolicy {policy.key}")
    return tuple(out)


def _check_shape(policy: Policy, errs: Collector) -> None:
    """What the parser guarantees, checked again for Policy objects built in code: the ``order`` formula
    only keeps rules apart within its limits, and an empty peer or port list never means "everything"."""
    if isinstance(policy.priority, bool) or not isinstance(policy.priority, int) or not 0 <= policy.priority <= 999:
        errs.add("spec.priority", f"{policy.priority!r} must be an integer from 0 to 999")
    for direction, rules in (("ingress", policy.ingress), ("egress", policy.egress)):
        if len(rules) > POSITIONS:
            errs.add(f"spec.{direction}", f"has {len(rules)} rules; a policy keeps at most {POSITIONS} per direction "
                                          "in order (the priority formula); split it into policies")
        for index, rule in enumerate(rules):
            if not rule.peers:
                errs.add(f"spec.{direction}[{index}]", "has no peers (any peer is {any: true})")
            if not rule.ports:
                errs.add(f"spec.{direction}[{index}]", "has no ports (all traffic is {any: true})")


def _make(policy: Policy, zone: str, direction: Direction, name: str, action: Action, order: int,
          local: AddrMatch, remote: AddrMatch | None, port: PortSpec | None, nat64: Nat64Prefix | None,
          is_default: bool = False) -> Rule:
    src, dst = (remote, local) if direction == "ingress" else (local, remote)
    proto = port.protocol if port else None
    pmin = port.port if port else None
    pmax = (port.end_port or port.port) if port else None
    icmp = port.icmp_type if port else None
    rid = rule_id(policy.key, zone, direction, action, order, src, dst, proto, pmin, pmax, icmp)
    return Rule(rid, policy.key, zone, direction, action, order, src, dst, proto, pmin, pmax, icmp,
                _in_nat64(remote, nat64), is_default, name, policy.generation)


def compile_policies(policies: Iterable[Policy], registry: ZoneRegistry, nat64: Nat64Prefix | None) -> RuleSet:
    """Compile a set of policies together: all of them or a ValidationError listing every failure."""
    rules: list[Rule] = []
    keys: list[str] = []
    problems: list[Problem] = []
    for policy in policies:
        if policy.key in keys:
            problems.append(Problem(policy.key, "policy defined twice"))
            continue
        keys.append(policy.key)
        try:
            rules.extend(compile_policy(policy, registry, nat64))
        except ValidationError as exc:
            problems.extend(exc.attributed())
    if problems:
        raise ValidationError(problems, source="policies")
    unique = {r.id: r for r in rules}
    return RuleSet(tuple(sorted(unique.values(), key=lambda r: (r.order, r.id))), tuple(keys))


def compile_objects(bodies: Iterable[dict], registry: ZoneRegistry, nat64: Nat64Prefix | None) -> RuleSet:
    """Parse and compile SecurityZonePolicy objects; every parse error of every object is reported."""
    policies = parse_each(bodies, lambda body: parse_policy(body, registry), "policies")
    return compile_policies(policies, registry, nat64)

