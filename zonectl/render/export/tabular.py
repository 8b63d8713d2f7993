"""JSON and CSV: the zones' value/mask per scope and their CIDRs per node, for scripts and spreadsheets.

Both carry value and mask separately (already normalised) next to the combined ``value/mask`` text,
so a consumer never has to parse a wildcard mask itself.

Both are written line by line rather than through ``json.dumps(indent=2)`` and ``csv.writer``, whose
per-value cost (the indenting JSON encoder is pure Python) made a 65,536-node export take minutes. The
text is the same: the per-node values are address texts and the other rows hold checked names and
numbers, none of which JSON escapes or CSV quotes (tests/unit/test_export.py compares both with the
standard library's output).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from .model import ExportData, NodeCidrs, ZoneExport

CSV_COLUMNS = ("zone", "id", "id_hex", "scope", "value", "mask", "match", "node", "cidr")


def _zone_entry(z: ZoneExport) -> dict[str, Any]:
    return {
        "zone": z.zone.name,
        "id": z.zone.id,
        "idHex": z.zone.hex_id,
        "description": z.zone.description,
        "matches": [
            {"scope": m.scope, "value": str(m.match.address), "mask": str(m.match.netmask), "match": m.match.text}
            for m in z.matches
        ],
    }


def _node_entry(n: NodeCidrs) -> dict[str, Any]:
    return {"node": n.node, "value": n.value, "mask": n.mask, "cidrs": list(n.cidrs)}


def to_dict(data: ExportData) -> dict[str, Any]:
    """The export as one JSON value (what ``render_json`` writes)."""
    zones = []
    for z in data.zones:
        entry = _zone_entry(z)
        if data.has_nodes:
            entry["nodes"] = [_node_entry(n) for n in data.on_nodes(z)]
        zones.append(entry)
    return {**_head(data), "zones": zones}


def _head(data: ExportData) -> dict[str, Any]:
    return {
        "apiVersion": "zonectl.io/v1alpha1",
        "kind": "ZoneExport",
        "layout": data.layout.as_dict(),
        "scopes": list(data.scopes),
        "nodes": list(data.node_texts) if data.nodes is not None else None,
    }


def _dump(value: Any, level: int) -> str:
    """``json.dumps(value, indent=2)`` as it appears nested ``level`` deep."""
    return json.dumps(value, indent=2).replace("\n", "\n" + "  " * level)


def _node_json(n: NodeCidrs) -> str:
    cidrs = '            "' + '",\n            "'.join(n.cidrs) + '"'
    return (f'        {{\n          "node": "{n.node}",\n          "value": "{n.value}",\n'
            f'          "mask": "{n.mask}",\n          "cidrs": [\n{cidrs}\n          ]\n        }}')


def _zone_json(data: ExportData, z: ZoneExport) -> str:
    fields = [f"      {json.dumps(k)}: {_dump(v, 3)}" for k, v in _zone_entry(z).items()]
    if data.has_nodes:
        fields.append('      "nodes": [\n' + ",\n".join(map(_node_json, data.on_nodes(z))) + "\n      ]")
    return "    {\n" + ",\n".join(fields) + "\n    }"


def render_json(data: ExportData) -> Iterator[str]:
    yield "{"
    yield from (f"  {json.dumps(k)}: {_dump(v, 1)}," for k, v in _head(data).items())
    if not data.zones:
        yield '  "zones": []'
    else:
        yield '  "zones": ['
        last = len(data.zones) - 1
        yield from (_zone_json(data, z) + ("," if i < last else "") for i, z in enumerate(data.zones))
        yield "  ]"
    yield "}"


def render_csv(data: ExportData) -> Iterator[str]:
    """One row per zone and scope (node, cidr empty), then one row per expanded CIDR (scope ``node``)."""
    yield ",".join(CSV_COLUMNS)
    for z in data.zones:
        head = f"{z.zone.name},{z.zone.id},{z.zone.hex_id}"
        for m in z.matches:
            yield f"{head},{m.scope},{m.match.address},{m.match.netmask},{m.match.text},,"
        rows = [f"{head},node,{n.value},{n.mask},{n.value}/{n.mask},{n.node},{c}" for n in data.on_nodes(z) for c in n.cidrs]
        if rows:  # one chunk per zone
            yield "\n".join(rows)
