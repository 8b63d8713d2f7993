"""What a value must look like before a renderer writes it into a line of a ruleset or config file.

Why here and not only in the parsers: renderers are also handed objects built in code, read back from a
published document or from NB, so each renderer checks the exact form of every value it writes (names,
ids, policy keys, ports, addresses, comments). A newline, quote or space in a name would start a new
``ip6tables-restore`` rule, a new Tayga directive or a new nft statement; a ``%scope`` in an address
would carry text into the line. A value of the wrong form is a ValidationError naming it, never text.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Iterable

from ..core.errors import ValidationError
from ..core.fields import DNS_LABEL, short
from ..core.layout import ALL_ONES, AddrMatch
from ..core.rules import Rule

RULE_ID = re.compile(r"r[0-9a-f]{15}")
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
OVN_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,253}")  # OVN-Kubernetes switch and port names (node names, k8s-, rtos-)
TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,63}")  # a controller name, a chain suffix
PATH = re.compile(r"/[A-Za-z0-9._/-]{0,399}")
DOMAIN = re.compile(r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
TEXT = re.compile(r"[A-Za-z0-9 _.,:;/()+=@-]{0,200}")  # free text in a comment: no quote, newline, #, \, $
PROTOCOLS = ("tcp", "udp", "sctp", "icmpv6")


def refuse(what: str, value: Any, why: str) -> ValidationError:
    return ValidationError(f"{what}: {short(value)} {why}", source="render")


def pattern(value: Any, regex: re.Pattern[str], what: str, form: str) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise refuse(what, value, f"is not {form}")
    return value


def name(value: Any, what: str) -> str:
    """A DNS label: zone, rule, policy and namespace names."""
    return pattern(value, DNS_LABEL, what, "a DNS label")


def policy_key(value: Any, what: str = "policy") -> str:
    """``namespace/name``, both DNS labels."""
    ns, sep, rest = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not sep or not DNS_LABEL.fullmatch(ns) or not DNS_LABEL.fullmatch(rest):
        raise refuse(what, value, "is not namespace/name (two DNS labels)")
    return value


def text(value: Any, what: str) -> str:
    return pattern(value, TEXT, what, "plain text (letters, digits, spaces and _ . , : ; / ( ) + = @ -)")


def integer(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise refuse(what, value, f"is not an integer from {lo} to {hi}")
    return value


def one_of(value: Any, allowed: Iterable[Any], what: str) -> Any:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise refuse(what, value, f"is not one of {', '.join(map(str, allowed))}")
    return value


def match(value: Any, what: str) -> AddrMatch:
    if not isinstance(value, AddrMatch) or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= ALL_ONES for v in (value.value, value.mask)):
        raise refuse(what, value, "is not an address match (value/mask)")
    return value


def address(value: Any, kinds: tuple[type, ...], what: str) -> Any:
    """An ``ipaddress`` object of one of ``kinds``, without an IPv6 ``%scope`` (which would be written too)."""
    if not isinstance(value, kinds):
        raise refuse(what, value, f"is not {' or '.join(k.__name__ for k in kinds)}")
    base = value.network_address if isinstance(value, (IPv4Network, IPv6Network)) else value
    if getattr(base, "scope_id", None) is not None:
        raise refuse(what, str(value), "has a %scope, which has no place in a rule")
    return value


def ipv4_net(value: Any, what: str) -> IPv4Network:
    return address(value, (IPv4Network,), what)


def ipv4(value: Any, what: str) -> IPv4Address:
    return address(value, (IPv4Address,), what)


def ipv6_net(value: Any, what: str) -> IPv6Network:
    return address(value, (IPv6Network,), what)


def ipv6(value: Any, what: str) -> IPv6Address:
    return address(value, (IPv6Address,), what)


def rule(r: Any) -> Rule:
    """Every field of a compiled rule, in the exact form the renderers write it."""
    if not isinstance(r, Rule):
        raise refuse("rule", r, "is not a compiled Rule")
    rid = pattern(r.id, RULE_ID, "rule id", "a rule id (r + 15 hex digits)")
    where = f"rule {rid}"
    policy_key(r.policy, f"{where} policy")
    name(r.zone, f"{where} zone")
    one_of(r.direction, ("ingress", "egress"), f"{where} direction")
    one_of(r.action, ("allow", "deny"), f"{where} action")
    integer(r.order, f"{where} order", 0, 2**62)
    integer(r.generation, f"{where} generation", 0, 2**63 - 1)
    for side in ("src", "dst"):
        if getattr(r, side) is not None:
            match(getattr(r, side), f"{where} {side}")
    if r.protocol is not None:
        one_of(r.protocol, PROTOCOLS, f"{where} protocol")
    for field, hi in (("port_min", 65535), ("port_max", 65535), ("icmp_type", 255)):
        value = getattr(r, field)
        if value is not None:
            integer(value, f"{where} {field}", 0 if field == "icmp_type" else 1, hi)
    if (r.port_min is None) != (r.port_max is None) or (
            r.port_min is not None and r.port_max is not None and r.port_max < r.port_min):
        raise refuse(f"{where} ports", (r.port_min, r.port_max), "is not a port range")
    if r.port_min is not None and r.protocol in (None, "icmpv6") or r.icmp_type is not None and r.protocol != "icmpv6":
        raise refuse(f"{where} protocol", r.protocol, "does not fit its ports / ICMPv6 type")
    if not isinstance(r.nat64, bool) or not isinstance(r.is_default, bool):
        raise refuse(f"{where} flags", (r.nat64, r.is_default), "are not booleans")
    if r.name != "":
        pattern(r.name, DNS_LABEL, f"{where} name", "a DNS label")
    return r


def rules(rs: Iterable[Any]) -> list[Rule]:
    return [rule(r) for r in rs]
