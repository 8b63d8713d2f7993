"""Compiled rules -> an ``ip6tables-restore --noflush`` file in chains zonectl owns.

Why restore format: the whole filter (and the zone marks) is replaced in one call, which the kernel
commits atomically, instead of a window of half-applied rules; declaring our chains flushes only
them, so rules others keep in FORWARD or in their own chains are never touched.

Layout, for the egress gateway (traffic to the NAT64 prefix)::

    FORWARD    -d <nat64 prefix> -j ZONECTL-FWD           (inserted once, only if missing)
    ZONECTL-FWD  one rule per compiled rule, in order, comment "zonectl rule=<id> zone=<z> ..."
                 -s <zone mask> -j DROP   per known zone   (counts that zone's drops)
                 -j DROP                                    (fail closed: no zone, unknown zone)
    PREROUTING (mangle) -d <nat64 prefix> -j ZONECTL-MARK
    ZONECTL-MARK -s <zone mask> -j MARK --set-xmark <v>/<mask>   per zone with its own IPv4 pool

The text is written the way ``ip6tables-save`` prints it, so a saved copy can be compared line by line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..core.layout import AddrMatch
from ..core.rules import Rule

FWD_CHAIN = "ZONECTL-FWD"
MARK_CHAIN = "ZONECTL-MARK"
OWNER = "zonectl"
PROTO = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmpv6": "ipv6-icmp"}


@dataclass(frozen=True)
class ZoneMatch:
    """A zone's name, id and source match, for the per-zone drop (and counters) and marks."""

    name: str
    match: AddrMatch


@dataclass(frozen=True)
class ZoneMark:
    zone: str
    match: AddrMatch
    value: int
    mask: int


def addr(match: AddrMatch) -> str:
    """How ip6tables-save prints an address match: ``/len`` for prefixes, ``/mask`` for wildcards."""
    return match.cidr_or_mask


def comment(text: str) -> str:
    if len(text) > 255:
        text = text[:255]
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def rule_comment(rule: Rule) -> str:
    kind = " default" if rule.is_default else ""
    return f"{OWNER} rule={rule.id} zone={rule.zone} action={rule.action} policy={rule.policy}{kind}"


def match_args(rule: Rule, *, with_dst: bool = True) -> list[str]:
    """The match part of a rule, in ip6tables-save order: -s, -d, -p, protocol match."""
    out: list[str] = []
    if rule.src is not None and not rule.src.is_any:
        out += ["-s", addr(rule.src)]
    if with_dst and rule.dst is not None and not rule.dst.is_any:
        out += ["-d", addr(rule.dst)]
    if rule.protocol is not None:
        proto = PROTO[rule.protocol]
        out += ["-p", proto]
        if rule.protocol == "icmpv6":
            if rule.icmp_type is not None:
                out += ["-m", "icmp6", "--icmpv6-type", str(rule.icmp_type)]
        elif rule.port_min is not None:
            ports = str(rule.port_min) if rule.port_max in (None, rule.port_min) else f"{rule.port_min}:{rule.port_max}"
            out += ["-m", proto, "--dport", ports]
    return out


def rule_line(chain: str, rule: Rule) -> str:
    target = "ACCEPT" if rule.action == "allow" else "DROP"
    return " ".join(["-A", chain, *match_args(rule), comment(rule_comment(rule)), "-j", target])


def forward_lines(rules: Iterable[Rule], zones: Sequence[ZoneMatch], chain: str = FWD_CHAIN) -> list[str]:
    """The body of the egress chain: rules in order, then per-zone drops, then the fail-closed drop."""
    lines = [rule_line(chain, r) for r in rules]
    for z in sorted(zones, key=lambda z: z.name):
        lines.append(" ".join(["-A", chain, "-s", addr(z.match),
                               comment(f"{OWNER} zone={z.name} action=deny closed"), "-j", "DROP"]))
    lines.append(" ".join(["-A", chain, comment(f"{OWNER} zone=- action=deny fail-closed"), "-j", "DROP"]))
    return lines


def mark_lines(marks: Sequence[ZoneMark], chain: str = MARK_CHAIN) -> list[str]:
    return [
        " ".join(["-A", chain, "-s", addr(m.match), comment(f"{OWNER} zone={m.zone} egress=own-pool"),
                  "-j", "MARK", "--set-xmark", f"{m.value:#x}/{m.mask:#x}"])
        for m in sorted(marks, key=lambda m: m.zone)
    ]


def jump_line(builtin: str, nat64: AddrMatch, chain: str) -> str:
    """The one rule zonectl adds to a built-in chain (inserted first, only when missing)."""
    return " ".join(["-I", builtin, "1", "-d", addr(nat64), comment(f"{OWNER} jump"), "-j", chain])


def jump_spec(builtin: str, nat64: AddrMatch, chain: str) -> list[str]:
    """The same rule as ``ip6tables -C/-D`` arguments (for checking whether it is present)."""
    return [builtin, "-d", addr(nat64), "-m", "comment", "--comment", f"{OWNER} jump", "-j", chain]


def render_restore(
    rules: Iterable[Rule],
    nat64: AddrMatch,
    zones: Sequence[ZoneMatch],
    marks: Sequence[ZoneMark] = (),
    *,
    jumps: Iterable[str] = ("FORWARD", "PREROUTING"),
) -> str:
    """The full ``ip6tables-restore --noflush`` input. ``jumps`` lists the built-in chains whose jump
    rule is missing and must be inserted (the gateway checks; a pure export includes both)."""
    jumps = set(jumps)
    out = ["# Generated by zonectl: owned chains only; load with ip6tables-restore --noflush"]
    out += ["*filter", f":{FWD_CHAIN} - [0:0]"]
    if "FORWARD" in jumps:
        out.append(jump_line("FORWARD", nat64, FWD_CHAIN))
    out += forward_lines(rules, zones)
    out.append("COMMIT")
    out += ["*mangle", f":{MARK_CHAIN} - [0:0]"]
    if "PREROUTING" in jumps:
        out.append(jump_line("PREROUTING", nat64, MARK_CHAIN))
    out += mark_lines(marks)
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_per_rule_commands(rules: Iterable[Rule], zones: Sequence[ZoneMatch], chain: str = FWD_CHAIN) -> list[list[str]]:
    """The same filter as one ``ip6tables`` argv per rule (the slow way; the benchmark's baseline)."""
    return [shlex.split(line) for line in forward_lines(rules, zones, chain)]


def render_cleanup(nat64: AddrMatch) -> list[list[str]]:
    """argv lists that remove everything zonectl added (for ``zonectl gateway run`` shutdown/uninstall)."""
    return [
        ["-t", "filter", "-D", *jump_spec("FORWARD", nat64, FWD_CHAIN)],
        ["-t", "filter", "-F", FWD_CHAIN],
        ["-t", "filter", "-X", FWD_CHAIN],
        ["-t", "mangle", "-D", *jump_spec("PREROUTING", nat64, MARK_CHAIN)],
        ["-t", "mangle", "-F", MARK_CHAIN],
        ["-t", "mangle", "-X", MARK_CHAIN],
    ]


def owned_lines(save_text: str, chains: Sequence[str] = (FWD_CHAIN, MARK_CHAIN)) -> list[str]:
    """zonectl's rules in an ``ip6tables-save`` output (counters stripped): what a re-apply compares."""
    out: list[str] = []
    for line in save_text.splitlines():
        body = line.split("] ", 1)[1] if line.startswith("[") else line
        words = body.split()
        if len(words) >= 2 and words[0] == "-A" and (words[1] in chains or f"--comment \"{OWNER} jump\"" in body):
            out.append(body)
    return out


@dataclass(frozen=True)
class Counter:
    chain: str
    comment: str
    packets: int
    bytes: int

    def field(self, key: str) -> str | None:
        for word in self.comment.split():
            if word.startswith(key + "="):
                return word.split("=", 1)[1]
        return None


def parse_counters(save_text: str, chain: str = FWD_CHAIN) -> list[Counter]:
    """Per-rule counters from ``ip6tables-save -c`` for rules in ``chain`` carrying a zonectl comment."""
    out: list[Counter] = []
    for line in save_text.splitlines():
        if not line.startswith("["):
            continue
        head, _, body = line.partition("] ")
        words = body.split()
        if len(words) < 2 or words[0] != "-A" or words[1] != chain:
            continue
        packets, _, nbytes = head[1:].partition(":")
        text = ""
        if "--comment " in body:
            rest = body.split("--comment ", 1)[1]
            text = rest[1:].split('"', 1)[0] if rest.startswith('"') else rest.split()[0]
        if text.startswith(OWNER):
            out.append(Counter(chain, text, int(packets), int(nbytes)))
    return out
