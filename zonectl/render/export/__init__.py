"""Firewall export: the zones as masks (JSON, CSV, nftables, ip6tables, Check Point) or as CIDRs per node
(PAN-OS, FortiGate, Cisco ASA), rendered from one ``ExportData`` (see ``model.build``).

Each format is a pure function ExportData -> text, in a module of its own.
"""

from __future__ import annotations

from typing import Callable

from .asa import render_asa
from .checkpoint import render_checkpoint
from .fortigate import render_fortigate
from .ip6tables import render_ip6tables
from .model import ExportData, build, default_scopes
from .nftables import render_nftables
from .panos import render_panos
from .tabular import render_csv, render_json

FORMATS: dict[str, Callable[[ExportData], str]] = {
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

__all__ = ["CIDR_FORMATS", "FORMATS", "ExportData", "build", "default_scopes", "render"]


def render(fmt: str, data: ExportData) -> str:
    try:
        return FORMATS[fmt](data)
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})") from None
