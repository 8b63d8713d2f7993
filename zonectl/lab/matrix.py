"""The reachability matrix: which probes to send, and expected (from the compiled rules) vs observed.

Pure: the probes are planned from the topology and the services, the expectation comes from
``expect.expected`` and the observations are handed in, so rendering and judging are unit-tested
without a lab. Rows are source zones, columns destination zones, the IPv4 "internet" targets (reached
through the NAT64 prefix) and the same targets by name (resolved by each pod through the DNS64
server: the cell also requires the NAT64 address of the target); each cell holds one verdict per
service. A second matrix (``plan_inbound``) has the IPv4 internet host as its row and the static maps
as columns: its cells require the pod's answer to name the client's NAT64 address (the return path).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from ..core.nat64 import Nat64Prefix
from ..core.rules import RuleSet
from .expect import Service, Verdict, expected
from .topology import PodPlan, Topology
from .traffic import Observation, ProbeSpec

PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Endpoint:
    label: str
    address: IPv6Address  # what the probe reaches (for a name: what it must resolve to)
    pod: PodPlan | None = None  # None: an IPv4 internet target
    ipv4: IPv4Address | None = None
    name: str | None = None  # dialled by name: resolved by the source pod through the DNS64 server


@dataclass(frozen=True)
class Cell:
    src: str
    dst: str
    service: Service
    src_address: IPv6Address
    dst_address: IPv6Address
    expected: Verdict
    observed: Observation | None = None
    resolved_want: str | None = None  # a name probe: the address the pod must have resolved
    answer_want: str | None = None  # what the far side must answer (inbound: the client as the pod saw it)

    @property
    def agrees(self) -> bool:
        o = self.observed
        if o is None or o.ok != self.expected.allowed:
            return False
        if self.resolved_want is not None and o.resolved != self.resolved_want:
            return False
        return not (o.ok and self.answer_want is not None and o.answer != self.answer_want)

    @property
    def key(self) -> str:
        return f"{self.src}>{self.dst}>{self.service.label}"


@dataclass
class Matrix:
    rows: list[str]
    cols: list[str]
    services: tuple[Service, ...]
    cells: dict[tuple[str, str, Service], Cell] = field(default_factory=dict)

    def cell(self, src: str, dst: str, svc: Service) -> Cell:
        return self.cells[(src, dst, svc)]

    @property
    def cells_by_key(self) -> dict[str, Cell]:
        return {c.key: c for c in self.cells.values()}

    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells.values() if not c.agrees]

    @property
    def passed(self) -> bool:
        return bool(self.cells) and not self.mismatches()


def _source_pod(topo: Topology, zone: str) -> PodPlan:
    return topo.pods_of(zone)[0]


def _dest_pod(topo: Topology, zone: str, src: PodPlan) -> PodPlan:
    """A pod of ``zone`` other than the source, on another node when there is one (crosses the router)."""
    candidates = [p for p in topo.pods_of(zone) if p.name != src.name]
    if not candidates:
        raise ValueError(f"zone {zone} has no pod besides {src.name}; the lab needs two pods per zone")
    other_node = [p for p in candidates if p.node != src.node]
    return (other_node or candidates)[0]


def internet_endpoints(topo: Topology, nat64: Nat64Prefix) -> list[Endpoint]:
    by_address = [Endpoint(str(v4), nat64.embed(v4), None, v4) for v4 in topo.internet.targets]
    by_name = [Endpoint(name, nat64.embed(v4), None, v4, name) for name, v4 in topo.internet.names]
    return by_address + by_name


DNS = Service("udp", 53)


def plan_matrix(topo: Topology, ruleset: RuleSet, nat64: Nat64Prefix, services: tuple[Service, ...],
                *, timeout: float = PROBE_TIMEOUT) -> tuple[Matrix, list[ProbeSpec]]:
    """Every (source zone, destination, service) cell with its expectation, and the probe for each."""
    rows = list(topo.zones)
    inet = internet_endpoints(topo, nat64)
    matrix = Matrix(rows, rows + [e.label for e in inet], services)
    probes: list[ProbeSpec] = []
    for src_zone in rows:
        src = _source_pod(topo, src_zone)
        dests = [Endpoint(z, (d := _dest_pod(topo, z, src)).address, d) for z in rows] + inet
        for dst in dests:
            dns = expected(ruleset, nat64, src.address, topo.dns, DNS) if dst.name else None
            for svc in services:
                verdict = expected(ruleset, nat64, src.address, dst.address, svc)
                if dns is not None and not dns.allowed:
                    verdict = Verdict(False, f"cannot ask the DNS64 server ({dns.reason})")
                want = str(dst.address) if dns is not None and dns.allowed else None
                cell = Cell(src_zone, dst.label, svc, src.address, dst.address, verdict, resolved_want=want)
                matrix.cells[(src_zone, dst.label, svc)] = cell
                probes.append(ProbeSpec(cell.key, src.netns, dst.name or str(dst.address), svc, timeout))
    return matrix, probes


def plan_inbound(topo: Topology, ruleset: RuleSet, nat64: Nat64Prefix, services: tuple[Service, ...],
                 *, timeout: float = PROBE_TIMEOUT) -> tuple[Matrix, list[ProbeSpec]]:
    """The IPv4 internet host -> each static map (a zone's published pod), every service. Expected: what
    the destination zone's ingress rules say of the client's NAT64 address (nothing else judges it)."""
    client = topo.internet.address
    row = f"from {client}"
    client6 = nat64.embed(client)
    cols = [f"{v4} ({pod})" for v4, pod in topo.internet.maps]
    matrix = Matrix([row], cols, services)
    probes: list[ProbeSpec] = []
    for (v4, pod_name), col in zip(topo.internet.maps, cols, strict=True):
        pod = topo.pod(pod_name)
        for svc in services:
            verdict = expected(ruleset, nat64, client6, pod.address, svc)
            answer = str(v4) if svc.proto == "icmpv6" else str(client6)
            cell = Cell(row, col, svc, client6, pod.address, verdict, answer_want=answer)
            matrix.cells[(row, col, svc)] = cell
            probes.append(ProbeSpec(cell.key, topo.internet.netns, str(v4), svc, timeout))
    return matrix, probes


def observe(matrix: Matrix, results: dict[str, Observation]) -> Matrix:
    """The same matrix with each cell's observation filled in (a missing result stays None: a mismatch)."""
    out = Matrix(matrix.rows, matrix.cols, matrix.services)
    for k, c in matrix.cells.items():
        out.cells[k] = replace(c, observed=results.get(c.key))
    return out


# --- text -----------------------------------------------------------------------------------------


def _short(svc: Service) -> str:
    """tcp/8080 -> 8080, udp/53 -> u53, icmp -> icmp: cells stay narrow."""
    if svc.proto == "icmpv6":
        return "icmp"
    return str(svc.port) if svc.proto == "tcp" else f"u{svc.port}"


def cell_text(matrix: Matrix, src: str, dst: str) -> str:
    """What got through; ``+x!`` = got through against policy, ``-x!`` = policy allows it but it was blocked,
    ``x?`` = the verdict is right but the name resolved elsewhere (or the far side answered wrongly)."""
    parts: list[str] = []
    for svc in matrix.services:
        c = matrix.cell(src, dst, svc)
        seen = c.observed is not None and c.observed.ok
        if c.agrees and seen:
            parts.append(_short(svc))
        elif not c.agrees and c.observed is not None and c.observed.ok == c.expected.allowed:
            parts.append(_short(svc) + "?")  # the verdict is right, the name resolved (or the answer) is not
        elif not c.agrees:
            parts.append(("-" if c.expected.allowed else "+") + _short(svc) + "!")
    if len(parts) == len(matrix.services) and not any(p.endswith(("!", "?")) for p in parts):
        return "all"
    return " ".join(parts) or "-"


def render_text(matrix: Matrix) -> str:
    head = ["from \\ to"] + matrix.cols
    table = [head] + [[r] + [cell_text(matrix, r, c) for c in matrix.cols] for r in matrix.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    legend = ("cells: services that got through (tcp port, uN = udp port, icmp = ICMPv6 echo); '-' none, 'all' all. "
              "Probed: " + " ".join(s.label for s in matrix.services) + ".")
    mism = matrix.mismatches()
    out = lines + ["", legend]
    if mism:
        out.append(f"MISMATCHES ({len(mism)}): '+x!' got through against policy, '-x!' allowed but blocked, "
                   "'x?' a name resolved to the wrong address (or a wrong answer)")
        groups: dict[tuple[str, str, bool, str, str], list[str]] = {}
        for c in mism:
            seen = "no result" if c.observed is None else ("got through" if c.observed.ok else "blocked")
            if c.observed is not None and c.observed.ok == c.expected.allowed:
                seen = (f"resolved to {c.observed.resolved}, not {c.resolved_want}" if c.observed.resolved != c.resolved_want
                        else f"answered {c.observed.answer}, not {c.answer_want}")
            groups.setdefault((c.src, c.dst, c.expected.allowed, c.expected.reason, seen), []).append(c.service.label)
        for (src, dst, allowed, reason, seen), labels in groups.items():
            out.append(f"  {src} -> {dst} {' '.join(labels)}: observed {seen}; policy "
                       f"{'allows' if allowed else 'denies'} ({reason})")
    else:
        total = len(matrix.cells)
        n_allowed = sum(1 for c in matrix.cells.values() if c.expected.allowed)
        out.append(f"all {total} probes agree with the policy ({n_allowed} allowed, {total - n_allowed} denied)")
    return "\n".join(out)


def egress_sources(matrix: Matrix) -> dict[str, set[str]]:
    """Per source zone, the IPv4 addresses the internet saw (TCP/UDP answers to NAT64 probes)."""
    out: dict[str, set[str]] = {}
    inet_cols = [c for c in matrix.cols if c not in matrix.rows]
    for (src, dst, svc), c in matrix.cells.items():
        if dst in inet_cols and svc.proto != "icmpv6" and c.observed and c.observed.ok and c.observed.answer:
            out.setdefault(src, set()).add(c.observed.answer)
    return out


# --- picture --------------------------------------------------------------------------------------

_COLORS = {"open": "#2e7d32", "closed": "#cfd8dc", "partial": "#81c784", "bad": "#c62828"}


def _cell_state(matrix: Matrix, src: str, dst: str) -> str:
    cells = [matrix.cell(src, dst, s) for s in matrix.services]
    if any(not c.agrees for c in cells):
        return "bad"
    through = sum(1 for c in cells if c.observed and c.observed.ok)
    return "closed" if through == 0 else ("open" if through == len(cells) else "partial")


def render_svg(matrix: Matrix, title: str = "zonectl lab: reachability") -> str:
    """An SVG grid: green = traffic got through as policy says, grey = denied as policy says, red = mismatch."""
    cw, ch, lw, th = 150, 46, 110, 70
    w, h = lw + cw * len(matrix.cols) + 10, th + ch * len(matrix.rows) + 60
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="monospace" font-size="11">',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{e(title)}</text>',
           '<text x="10" y="38">rows: from zone, columns: to zone / IPv4 host via NAT64</text>']
    for j, col in enumerate(matrix.cols):
        out.append(f'<text x="{lw + j * cw + cw / 2}" y="{th - 8}" text-anchor="middle" font-weight="bold">{e(col)}</text>')
    for i, row in enumerate(matrix.rows):
        y = th + i * ch
        out.append(f'<text x="{lw - 8}" y="{y + ch / 2 + 4}" text-anchor="end" font-weight="bold">{e(row)}</text>')
        for j, col in enumerate(matrix.cols):
            x = lw + j * cw
            state = _cell_state(matrix, row, col)
            text = cell_text(matrix, row, col)
            detail = "; ".join(f"{c.service.label}: expected {'allow' if c.expected.allowed else 'deny'}, "
                               f"observed {'-' if c.observed is None else ('allow' if c.observed.ok else 'deny')}"
                               for c in (matrix.cell(row, col, s) for s in matrix.services))
            fg = "#ffffff" if state in ("open", "bad") else "#263238"
            out.append(f'<g><title>{e(row)} -> {e(col)}: {e(detail)}</title>'
                       f'<rect x="{x + 2}" y="{y + 2}" width="{cw - 4}" height="{ch - 4}" rx="4" fill="{_COLORS[state]}"/>'
                       f'<text x="{x + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" fill="{fg}">{e(text[:22])}</text></g>')
    ly = th + ch * len(matrix.rows) + 25
    for k, (state, label) in enumerate((("open", "all through"), ("partial", "some through"),
                                        ("closed", "all denied"), ("bad", "disagrees with policy"))):
        out.append(f'<rect x="{10 + k * 170}" y="{ly - 11}" width="14" height="14" fill="{_COLORS[state]}"/>'
                   f'<text x="{30 + k * 170}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(matrix: Matrix, sections: dict[str, str]) -> str:
    """A page with the SVG matrix and the text sections (export, counters, drift)."""
    e = html.escape
    body = ["<h1>zonectl lab</h1>", render_svg(matrix), f"<pre>{e(render_text(matrix))}</pre>"]
    for name, text in sections.items():
        body.append(f"<h2>{e(name)}</h2><pre>{e(text)}</pre>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>zonectl lab</title></head><body>"
            + "\n".join(body) + "</body></html>\n")
