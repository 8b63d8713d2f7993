"""Firewall export: the zones as masks (JSON, CSV, nftables, ip6tables, Check Point) or as CIDRs per node
(PAN-OS, FortiGate, Cisco ASA), rendered from one ``ExportData`` (see ``model.build``).

Each format is a pure function ExportData -> lines of text, in a module of its own: an export over
65,536 nodes is half a gigabyte of text, which ``write`` passes on in batches instead of building it whole.
"""

from __future__ import annotations

from typing import Callable, Iterator, TextIO

from .asa import render_asa
from .checkpoint import render_checkpoint
from .fortigate import render_fortigate
from .ip6tables import render_ip6tables
from .model import ExportData, build, default_scopes
from .nftables import render_nftables
from .panos import render_panos
from .tabular import render_csv, render_json

FORMATS: dict[str, Callable[[ExportData], Iterator[str]]] = {
    "json": render_json,
    "csv": render_csv,
    "nftables": render_nftables,
    "ip6tables": render_ip6tables,
    "checkpoint": render_checkpoint,
    "panos": render_panos,
    "fortigate": render_fortigate,
    "asa": render_asa,
}
# Formats without wildcard masks: they describe the given nodes only, whatever the scope.
CIDR_FORMATS = frozenset({"panos", "fortigate", "asa"})

__all__ = ["CIDR_FORMATS", "FORMATS", "ExportData", "build", "default_scopes", "render", "write"]
BATCH = 1 << 20  # characters per write


def _lines(fmt: str, data: ExportData) -> Iterator[str]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    return FORMATS[fmt](data)


def render(fmt: str, data: ExportData) -> str:
    return "\n".join(_lines(fmt, data)) + "\n"


def write(fmt: str, data: ExportData, out: TextIO) -> None:
    """Write the export to ``out`` in batches of lines. A format's refusal (e.g. no nodes for a CIDR format)
    comes before its first line, so nothing is written unless the export can be made."""
    batch: list[str] = []
    size = 0
    for line in _lines(fmt, data):
        batch.append(line)
        size += len(line)
        if size >= BATCH:
            out.write("\n".join(batch) + "\n")
            batch.clear()
            size = 0
    if batch:
        out.write("\n".join(batch) + "\n")
