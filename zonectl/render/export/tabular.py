"""JSON and CSV: the zones' value/mask per scope and their CIDRs per node, for scripts and spreadsheets.

Both carry value and mask separately (already normalised) next to the combined ``value/mask`` text,
so a consumer never has to parse a wildcard mask itself.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .model import ExportData

CSV_COLUMNS = ("zone", "id", "id_hex", "scope", "value", "mask", "match", "node", "cidr")


def to_dict(data: ExportData) -> dict[str, Any]:
    zones = []
    for z in data.zones:
        entry: dict[str, Any] = {
            "zone": z.zone.name,
            "id": z.zone.id,
            "idHex": z.zone.hex_id,
            "description": z.zone.description,
            "matches": [
                {"scope": m.scope, "value": str(m.match.address), "mask": str(m.match.netmask), "match": m.match.text}
                for m in z.matches
            ],
        }
        if data.has_nodes:
            entry["nodes"] = [
                {
                    "node": str(n.node),
                    "value": str(n.match.address),
                    "mask": str(n.match.netmask),
                    "cidrs": [str(c) for c in n.cidrs],
                }
                for n in z.nodes
            ]
        zones.append(entry)
    return {
        "apiVersion": "zonectl.io/v1alpha1",
        "kind": "ZoneExport",
        "layout": data.layout.as_dict(),
        "scopes": list(data.scopes),
        "nodes": [str(n) for n in data.nodes] if data.nodes is not None else None,
        "zones": zones,
    }


def render_json(data: ExportData) -> str:
    return json.dumps(to_dict(data), indent=2) + "\n"


def render_csv(data: ExportData) -> str:
    """One row per zone and scope (node, cidr empty), then one row per expanded CIDR (scope ``node``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for z in data.zones:
        head = [z.zone.name, z.zone.id, z.zone.hex_id]
        for m in z.matches:
            writer.writerow(head + [m.scope, m.match.address, m.match.netmask, m.match.text, "", ""])
        for n in z.nodes:
            for c in n.cidrs:
                writer.writerow(head + ["node", n.match.address, n.match.netmask, n.match.text, n.node, c])
    return out.getvalue()
