"""The sections `lab test` prints besides the matrix: ND, NAT64 sources, export, counters; and the pictures."""

from __future__ import annotations

from pathlib import Path

from . import enforce, traffic
from .inputs import Compiled
from .state import LabError
from .matrix import Matrix, egress_sources, render_html, render_svg
from .topology import Topology


def nd_text(checks: list[traffic.NeighborCheck]) -> str:
    lines = []
    for c in checks:
        verdict = "ok" if c.ok else "FAILED"
        lines.append(f"{c.pod:<10} router {c.router} -> {c.seen_mac or '(unresolved)'} {c.state} {verdict}")
    return "\n".join(lines)


def egress_text(matrix: Matrix) -> str:
    seen = egress_sources(matrix)
    if not seen:
        return "no zone reached the IPv4 internet"
    return "\n".join(f"{zone:<10} seen as {', '.join(sorted(addrs))}" for zone, addrs in sorted(seen.items()))


def export_text(compiled: Compiled, topo: Topology, fmt: str) -> str:
    from ..render import export

    data = export.build(compiled.registry, None, [n.subnet for n in topo.nodes])
    return export.render(fmt, data).rstrip()


def counters_text(netns: str) -> str:
    """Per-zone allowed/denied packet counts and Tayga health, from the gateway's own /metrics."""
    try:
        text = enforce.gateway_metrics(netns)
    except LabError as exc:  # reported, not fatal: drift already says the gateway is not running
        return f"unavailable: {exc}"
    rows: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for line in text.splitlines():
        if line.startswith("zonectl_gateway_packets_total{"):
            labels, value = line.rsplit(" ", 1)
            fields = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1:-1].split(","))
            zone = fields.get("zone", "?").strip('"')
            rows.setdefault("(no zone)" if zone == "-" else zone, {})[fields.get("action", "?").strip('"')] = \
                f"{float(value):.0f}"
        elif line.startswith("zonectl_tayga_up{"):
            instance = line[line.index('"') + 1:line.rindex('"')]
            other.append(f"tayga {instance}: {'up' if float(line.rsplit(' ', 1)[1]) == 1 else 'DOWN'}")
    table = [f"{'zone':<10} {'allowed':>8} {'denied':>8}"]
    table += [f"{z:<10} {v.get('allow', '0'):>8} {v.get('deny', '0'):>8}" for z, v in sorted(rows.items())]
    return "\n".join(table + other)


def write_pictures(state_dir: Path, matrix: Matrix, sections: dict[str, str]) -> None:
    """matrix.svg (the grid alone) and matrix.html (grid, text matrix and every section) in the state dir."""
    (state_dir / "matrix.svg").write_text(render_svg(matrix))
    (state_dir / "matrix.html").write_text(render_html(matrix, sections))
