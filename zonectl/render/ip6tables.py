"""Compiled rules -> an ``ip6tables-restore --noflush`` file in chains zonectl owns.

Why restore format: the whole filter (and the zone marks) is replaced in one call, which the kernel
commits atomically, instead of a window of half-applied rules; declaring our chains flushes only
them, so rules others keep in FORWARD or in their own chains are never touched.

Layout, for the egress gateway (traffic to the NAT64 prefix)::

    FORWARD    -d <nat64 prefix> -j ZONECTL-FWD           (inserted once, only if missing)
    ZONECTL-FWD  -s <zone mask> -j ZONECTL-Z-<zone>          one dispatch rule per zone with rules
                 -s <zone mask> -j DROP                      zones without rules (closed, counted)
                 -j DROP                                     fail closed: no zone, unknown zone
    ZONECTL-Z-<zone>  the zone's compiled rules in order, comment "zonectl rule=<id> zone=<z> ...",
                 then -j DROP (closed): a packet walks the zone list plus its own zone's rules only,
                 not every rule of every zone (zone masks are disjoint, so this changes no verdict)
    PREROUTING (mangle) -d <nat64 prefix> -j ZONECTL-MARK
    ZONECTL-MARK -s <zone mask> -j MARK --set-xmark <v>/<mask>   per zone with its own IPv4 pool

The text is written the way ``ip6tables-save`` prints it, so a saved copy can be compared line by line.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..core.errors import ValidationError
from ..core.layout import AddrMatch
from ..core.rules import Rule
from . import checks

CHAIN_PREFIX = "ZONECTL-"
FWD_CHAIN = "ZONECTL-FWD"
ZONE_CHAIN_PREFIX = "ZONECTL-Z-"
MARK_CHAIN = "ZONECTL-MARK"
OWNER = "zonectl"
PROTO = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmpv6": "ipv6-icmp"}
CHAIN_RE = re.compile(r"ZONECTL-[A-Za-z0-9-]{1,20}")  # iptables chain names: at most 28 characters
BUILTINS = ("FORWARD", "PREROUTING")


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
    text = checks.text(text[:255], "ip6tables comment")  # built from checked tokens; checked again as a whole
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


def rule_line(chain: str, rule: Rule, *, with_src: bool = True) -> str:
    target = "ACCEPT" if rule.action == "allow" else "DROP"
    args = match_args(rule)
    if not with_src and args[:1] == ["-s"]:
        args = args[2:]
    return " ".join(["-A", chain, *args, comment(rule_comment(rule)), "-j", target])


def zone_chain(zone: str) -> str:
    """A zone's chain name; iptables allows 28 characters, zone names may have 63."""
    name = ZONE_CHAIN_PREFIX + checks.name(zone, "zone")
    if len(name) <= 28:
        return name
    return ZONE_CHAIN_PREFIX + zone[:11] + "-" + hashlib.sha256(zone.encode()).hexdigest()[:6]


def check_zones(zones: Sequence[ZoneMatch]) -> None:
    for z in zones:
        if not isinstance(z, ZoneMatch):
            raise ValidationError(f"zone {z!r} is not a ZoneMatch", source="render")
        checks.name(z.name, "zone")
        checks.match(z.match, f"zone {z.name} match")


def check_marks(marks: Sequence[ZoneMark]) -> None:
    for m in marks:
        if not isinstance(m, ZoneMark):
            raise ValidationError(f"mark {m!r} is not a ZoneMark", source="render")
        checks.name(m.zone, "mark zone")
        checks.match(m.match, f"mark {m.zone} match")
        checks.integer(m.value, f"mark {m.zone} value", 0, 2**32 - 1)
        checks.integer(m.mask, f"mark {m.zone} mask", 1, 2**32 - 1)


def zone_groups(rules: Iterable[Rule], zones: Sequence[ZoneMatch]) -> list[tuple[str, AddrMatch | None, list[Rule]]]:
    """(zone, match, its rules in order) for every zone that has rules or is known, sorted by name."""
    by_zone: dict[str, list[Rule]] = {}
    for r in rules:
        by_zone.setdefault(r.zone, []).append(r)
    matches: dict[str, AddrMatch | None] = {z.name: z.match for z in zones}
    for name, rs in by_zone.items():
        matches.setdefault(name, rs[0].src)  # egress rules: src is the zone's own match
    return [(name, matches[name], by_zone.get(name, [])) for name in sorted(matches)]


def chain_lines(rules: Iterable[Rule], zones: Sequence[ZoneMatch], chain: str = FWD_CHAIN,
                ingress: Sequence[AddrMatch] = ()) -> dict[str, list[str]]:
    """Every owned filter chain and its rules: the dispatch chain first, then one chain per zone.

    ``ingress`` are the IPv6 sides of static maps (services IPv4 clients reach through Tayga): their
    replies head for the NAT64 prefix too, so established flows from them are accepted first.
    """
    rules = checks.rules(rules)
    check_zones(zones)
    checks.pattern(chain, CHAIN_RE, "chain", "a ZONECTL- chain name")
    ingress = [checks.match(m, "static map") for m in ingress]
    out: dict[str, list[str]] = {chain: []}
    for m in ingress:
        out[chain].append(" ".join(["-A", chain, "-s", addr(m), "-m", "conntrack", "--ctdir", "REPLY",
                                    comment(f"{OWNER} ingress-map replies"), "-j", "ACCEPT"]))
    for name, match, zrules in zone_groups(rules, zones):
        src = ["-s", addr(match)] if match is not None and not match.is_any else []
        if not zrules:
            out[chain].append(" ".join(["-A", chain, *src, comment(f"{OWNER} zone={name} action=deny closed"),
                                        "-j", "DROP"]))
            continue
        zc = zone_chain(name)
        out[chain].append(" ".join(["-A", chain, *src, comment(f"{OWNER} dispatch={name}"), "-j", zc]))
        out[zc] = [rule_line(zc, r, with_src=False) for r in zrules]
        out[zc].append(" ".join(["-A", zc, comment(f"{OWNER} zone={name} action=deny closed"), "-j", "DROP"]))
    out[chain].append(" ".join(["-A", chain, comment(f"{OWNER} zone=- action=deny fail-closed"), "-j", "DROP"]))
    return out


def forward_lines(rules: Iterable[Rule], zones: Sequence[ZoneMatch], chain: str = FWD_CHAIN) -> list[str]:
    """All owned filter rules as ``-A`` lines (dispatch chain, then zone chains)."""
    return [line for lines in chain_lines(rules, zones, chain).values() for line in lines]


def mark_lines(marks: Sequence[ZoneMark], chain: str = MARK_CHAIN, ingress: Sequence[AddrMatch] = ()) -> list[str]:
    """Own-pool zones' marks; first, the replies of static-map services are left unmarked: they must reach
    the shared Tayga, which holds the maps (their own new connections leave by their zone's instance)."""
    check_marks(marks)
    checks.pattern(chain, CHAIN_RE, "chain", "a ZONECTL- chain name")
    replies = [" ".join(["-A", chain, "-s", addr(checks.match(m, "static map")), "-m", "conntrack", "--ctdir", "REPLY",
                         comment(f"{OWNER} ingress-map replies"), "-j", "RETURN"])
               for m in ingress] if marks else []
    return replies + [
        " ".join(["-A", chain, "-s", addr(m.match), comment(f"{OWNER} zone={m.zone} egress=own-pool"),
                  "-j", "MARK", "--set-xmark", f"{m.value:#x}/{m.mask:#x}"])
        for m in sorted(marks, key=lambda m: m.zone)
    ]


def jump_line(builtin: str, nat64: AddrMatch, chain: str) -> str:
    """The one rule zonectl adds to a built-in chain (inserted first, only when missing)."""
    checks.one_of(builtin, BUILTINS, "built-in chain")
    checks.match(nat64, "NAT64 prefix")
    checks.pattern(chain, CHAIN_RE, "chain", "a ZONECTL- chain name")
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
    stale_chains: Iterable[str] = (),
    ingress: Sequence[AddrMatch] = (),
) -> str:
    """The full ``ip6tables-restore --noflush`` input. ``jumps`` lists the built-in chains whose jump
    rule is missing and must be inserted (the gateway checks; a pure export includes both);
    ``stale_chains`` are zone chains left from an earlier apply, emptied and deleted here."""
    jumps = {checks.one_of(j, BUILTINS, "built-in chain") for j in jumps}
    checks.match(nat64, "NAT64 prefix")
    chains = chain_lines(rules, zones, ingress=ingress)
    stale = sorted({checks.pattern(c, CHAIN_RE, "stale chain", "a ZONECTL- chain name") for c in stale_chains}
                   - set(chains))
    out = ["# Generated by zonectl: owned chains only; load with ip6tables-restore --noflush"]
    out += ["*filter", *(f":{c} - [0:0]" for c in [*chains, *stale])]
    if "FORWARD" in jumps:
        out.append(jump_line("FORWARD", nat64, FWD_CHAIN))
    for lines in chains.values():
        out += lines
    out += [f"-X {c}" for c in stale]
    out.append("COMMIT")
    out += ["*mangle", f":{MARK_CHAIN} - [0:0]"]
    if "PREROUTING" in jumps:
        out.append(jump_line("PREROUTING", nat64, MARK_CHAIN))
    out += mark_lines(marks, ingress=ingress)
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def render_per_rule_commands(rules: Iterable[Rule], zones: Sequence[ZoneMatch]) -> list[list[str]]:
    """The same filter as one ``ip6tables`` argv per chain and rule (the slow way; the benchmark's baseline)."""
    chains = chain_lines(rules, zones)
    return [["-N", c] for c in chains] + [shlex.split(line) for lines in chains.values() for line in lines]


def render_cleanup(nat64: AddrMatch, zone_chains: Iterable[str] = ()) -> list[list[str]]:
    """argv lists that remove everything zonectl added (``zone_chains``: the live ZONECTL-Z-* chains)."""
    zone_chains = list(zone_chains)
    return [
        ["-t", "filter", "-D", *jump_spec("FORWARD", nat64, FWD_CHAIN)],
        ["-t", "filter", "-F", FWD_CHAIN],
        *(["-t", "filter", "-F", c] for c in zone_chains),
        *(["-t", "filter", "-X", c] for c in zone_chains),
        ["-t", "filter", "-X", FWD_CHAIN],
        ["-t", "mangle", "-D", *jump_spec("PREROUTING", nat64, MARK_CHAIN)],
        ["-t", "mangle", "-F", MARK_CHAIN],
        ["-t", "mangle", "-X", MARK_CHAIN],
    ]


def owned_chains(save_text: str) -> list[str]:
    """zonectl's chains declared in an ``ip6tables-save`` output (``:ZONECTL-... - [0:0]``)."""
    return [line[1:].split()[0] for line in save_text.splitlines() if line.startswith(":" + CHAIN_PREFIX)]


def owned_lines(save_text: str) -> list[str]:
    """zonectl's rules in an ``ip6tables-save`` output (counters stripped): what a re-apply compares."""
    out: list[str] = []
    for line in save_text.splitlines():
        body = line.split("] ", 1)[1] if line.startswith("[") else line
        words = body.split()
        if len(words) >= 2 and words[0] == "-A" and (words[1].startswith(CHAIN_PREFIX)
                                                     or f"--comment \"{OWNER} jump\"" in body):
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


def parse_counters(save_text: str) -> list[Counter]:
    """Per-rule counters from ``ip6tables-save -c``: every rule in zonectl's chains with a verdict comment
    (``zone=... action=...``); dispatch jumps are not verdicts and are left out."""
    out: list[Counter] = []
    for line in save_text.splitlines():
        if not line.startswith("["):
            continue
        head, _, body = line.partition("] ")
        words = body.split()
        if len(words) < 2 or words[0] != "-A" or not words[1].startswith(CHAIN_PREFIX):
            continue
        chain = words[1]
        packets, _, nbytes = head[1:].partition(":")
        text = ""
        if "--comment " in body:
            rest = body.split("--comment ", 1)[1]
            text = rest[1:].split('"', 1)[0] if rest.startswith('"') else rest.split()[0]
        if text.startswith(OWNER) and " action=" in text:
            out.append(Counter(chain, text, int(packets), int(nbytes)))
    return out
