"""What the policy says about one packet: the lab's "expected" column, computed from the compiled rules.

Why from the compiled rules and not from the policy YAML or a hand-written table: the matrix must
catch a compiler bug as surely as a backend bug, so the expectation is derived from the same IR every
enforcement point renders from, with the enforcement points' documented semantics:

* OVN (every packet between pods, and pod -> NAT64): the source zone's egress rules, then the
  destination zone's ingress rules. Within one direction the rule with the lowest ``order`` that
  matches decides (backends map lower order to higher ACL priority); no matching rule = allowed,
  as with Kubernetes NetworkPolicy for pods no policy selects. Both directions must allow.
  Connections are stateful: replies are never judged.
* Egress gateway (destinations inside the NAT64 prefix): the egress rules that concern the NAT64
  prefix (``RuleSet.for_gateway()``), first match by order; no match = dropped (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Iterable, Literal

from ..core.nat64 import Nat64Prefix
from ..core.rules import Rule, RuleSet

ProbeProto = Literal["tcp", "udp", "icmpv6"]
ECHO_REQUEST = 128


@dataclass(frozen=True, order=True)
class Service:
    """What one probe tries: a TCP/UDP port or an ICMPv6 echo."""

    proto: ProbeProto
    port: int | None = None

    @property
    def label(self) -> str:
        return "icmp" if self.proto == "icmpv6" else f"{self.proto}/{self.port}"

    @property
    def icmp_type(self) -> int | None:
        return ECHO_REQUEST if self.proto == "icmpv6" else None


@dataclass(frozen=True)
class Verdict:
    """Allowed or not, and which rule (or default) said so: the text a mismatch is explained with."""

    allowed: bool
    reason: str


def rule_matches(rule: Rule, src: IPv6Address, dst: IPv6Address, svc: Service) -> bool:
    """Does ``rule`` match a packet src -> dst of service ``svc`` (addresses, protocol, port, ICMP type)?"""
    if rule.src is not None and not rule.src.matches(src):
        return False
    if rule.dst is not None and not rule.dst.matches(dst):
        return False
    if rule.protocol is None:
        return True
    if rule.protocol != svc.proto:
        return False
    if svc.proto == "icmpv6":
        return rule.icmp_type is None or rule.icmp_type == svc.icmp_type
    if rule.port_min is None:
        return True
    assert svc.port is not None
    return rule.port_min <= svc.port <= (rule.port_max or rule.port_min)


def first_match(rules: Iterable[Rule], src: IPv6Address, dst: IPv6Address, svc: Service) -> Rule | None:
    """The deciding rule: lowest order first, deny before allow on a tie (then id, for determinism)."""
    for rule in sorted(rules, key=lambda r: (r.order, 0 if r.action == "deny" else 1, r.id)):
        if rule_matches(rule, src, dst, svc):
            return rule
    return None


def _say(rule: Rule, where: str) -> str:
    return f"{where}: {rule.policy} {rule.direction} {rule.name or rule.id} ({rule.action})"


def ovn_verdict(ruleset: RuleSet, src: IPv6Address, dst: IPv6Address, svc: Service) -> Verdict:
    """OVN's answer: source egress rules, then destination ingress rules; unmatched = allowed."""
    egress = first_match((r for r in ruleset if r.direction == "egress"), src, dst, svc)
    if egress is not None and egress.action == "deny":
        return Verdict(False, _say(egress, "ovn"))
    ingress = first_match((r for r in ruleset if r.direction == "ingress"), src, dst, svc)
    if ingress is not None and ingress.action == "deny":
        return Verdict(False, _say(ingress, "ovn"))
    said = [f"{r.policy} {r.direction} {r.name or r.id} (allow)" for r in (egress, ingress) if r is not None]
    return Verdict(True, "ovn: " + (" + ".join(said) if said else "no rule (open)"))


def gateway_verdict(ruleset: RuleSet, src: IPv6Address, dst: IPv6Address, svc: Service) -> Verdict:
    """The egress gateway's answer: NAT64 egress rules, first match; unmatched = dropped (fail closed)."""
    rule = first_match(ruleset.for_gateway(), src, dst, svc)
    if rule is None:
        return Verdict(False, "gateway: no rule allows this source (fail closed)")
    return Verdict(rule.action == "allow", _say(rule, "gateway"))


def expected(ruleset: RuleSet, nat64: Nat64Prefix | None, src: IPv6Address, dst: IPv6Address, svc: Service) -> Verdict:
    """The end-to-end verdict for a probe from ``src`` to ``dst``."""
    ovn = ovn_verdict(ruleset, src, dst, svc)
    if not ovn.allowed or nat64 is None or dst not in nat64.network:
        return ovn
    gw = gateway_verdict(ruleset, src, dst, svc)
    return gw if not gw.allowed else Verdict(True, f"{ovn.reason}; {gw.reason}")


def services_of(ruleset: RuleSet, *, control_ports: Iterable[int] = (9999, 7777, 6666, 5555)) -> tuple[Service, ...]:
    """The services worth probing: every TCP/UDP port a rule names (both ends of a range), ICMPv6 echo,
    and one TCP and one UDP "control" port that no rule names (to show what the defaults do)."""
    ports: set[Service] = {Service("icmpv6")}
    named: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for r in ruleset:
        if r.protocol in ("tcp", "udp") and r.port_min is not None:
            for port in {r.port_min, r.port_max or r.port_min}:
                ports.add(Service(r.protocol, port))
    for r in ruleset:
        if r.protocol in ("tcp", "udp") and r.port_min is not None:
            named[r.protocol].update(range(r.port_min, (r.port_max or r.port_min) + 1))
    for proto in ("tcp", "udp"):
        free = next(p for p in control_ports if p not in named[proto])
        ports.add(Service(proto, free))  # type: ignore[arg-type]
    order = {"icmpv6": 0, "tcp": 1, "udp": 2}
    return tuple(sorted(ports, key=lambda s: (order[s.proto], s.port or 0)))
