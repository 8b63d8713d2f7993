"""Firewall export over many nodes: zonectl's linear expansion beside the old per-node search.

For firewalls without IPv6 wildcard masks (PAN-OS, FortiGate, ASA; also CSV and JSON with --nodes) the
export lists every zone's CIDR on every node: 65,536 nodes (a /48 of /64s) x 30 zones is two million
(zone, node) pairs. Two measurements in one run:

  expansion  every zone's CIDRs grouped per node, from the same checked node list and zones:
             zonectl    export.build + ExportData.on_nodes (one pass over the nodes per zone, address texts)
             old        the algorithm zonectl had until issue 9: per zone ``layout.expand`` over all nodes,
                        then per node a search of that whole list for the node's own CIDRs (quadratic), as
                        ``ipaddress`` objects; run only up to --old-max nodes (it takes minutes beyond)
  command    ``zonectl export --format F --nodes FILE`` end to end in a fresh process (reading a
             ``kubectl get nodes -o json``-shaped file of N Node objects, writing to /dev/null), per format

    python benchmarks/export_scale.py                    # 256 .. 65,536 nodes, 30 zones (~3 min on 2 cores)
    python benchmarks/export_scale.py --quick            # up to 4,096 nodes (~30 s)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv6Network
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zonectl.core.layout import Layout  # noqa: E402
from zonectl.core.zones import Zone, ZoneRegistry  # noqa: E402
from zonectl.render import export  # noqa: E402

CLUSTER = IPv6Network("fd00:10:244::/48")
FORMATS = ("csv", "json", "panos", "fortigate", "asa", "nftables", "ip6tables")


def registry(zones: int) -> ZoneRegistry:
    layout = Layout(CLUSTER, datacenter=IPv6Network("fd00:10:200::/40"))
    return ZoneRegistry(layout, tuple(Zone(f"zone-{i}", 0x100 + i) for i in range(zones)))


def nodes(count: int) -> list[IPv6Network]:
    base = int(CLUSTER.network_address)
    return [IPv6Network((base | (i << 64), 64)) for i in range(count)]


def ours(reg: ZoneRegistry, node_list: list[IPv6Network]) -> int:
    data = export.build(reg, ["cluster"], node_list)
    return sum(len(n.cidrs) for z in data.zones for n in data.on_nodes(z))


def old(reg: ZoneRegistry, node_list: list[IPv6Network]) -> int:
    """The grouping zonectl's export model did before: for each node, search all of the zone's CIDRs."""
    layout = reg.layout
    checked = tuple(sorted({layout.check_node(n) for n in node_list}))
    count = 0
    for zone in reg:
        expanded = layout.expand(zone.id, checked)
        for node in checked:
            layout.node_zone_match(node, zone.id)
            count += len(tuple(c for c in expanded if c.subnet_of(node)))
    return count


def timed(fn: Callable[[ZoneRegistry, list[IPv6Network]], int], reg: ZoneRegistry,
          node_list: list[IPv6Network]) -> tuple[float, int]:
    start = time.perf_counter()
    result = fn(reg, node_list)
    return time.perf_counter() - start, result


def node_file(path: Path, count: int) -> None:
    items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"},
              "spec": {"podCIDR": str(n), "podCIDRs": [str(n)]}} for i, n in enumerate(nodes(count))]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))


def zone_file(path: Path, zones: int) -> None:
    path.write_text("".join(f"---\napiVersion: zonectl.io/v1alpha1\nkind: SecurityZone\nmetadata: {{name: zone-{i}}}\n"
                            f"spec: {{id: {0x100 + i}, namespaces: [ns-{i}]}}\n" for i in range(zones)))


def command(work: Path, fmt: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zonectl", "export", "--config", str(ROOT / "examples" / "config.yaml"),
                    "--zones", str(work / "zones.yaml"), "--nodes", str(work / "nodes.json"), "--format", fmt],
                   stdout=subprocess.DEVNULL, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="up to 4,096 nodes")
    p.add_argument("--zones", type=int, default=30)
    p.add_argument("--old-max", type=int, default=1024, help="largest node count the old algorithm runs for")
    args = p.parse_args()
    counts = [256, 512, 1024, 4096] + ([] if args.quick else [16384, 65536])
    reg = registry(args.zones)
    print(f"expansion: {args.zones} zones, CIDRs grouped per node (seconds)")
    print(f"{'nodes':>7} {'pairs':>10} {'zonectl':>9} {'old':>9} {'old/zonectl':>12}")
    for n in counts:
        node_list = nodes(n)
        t_ours, got = timed(ours, reg, node_list)
        if n <= args.old_max:
            t_old, want = timed(old, reg, node_list)
            assert got == want, (got, want)
            print(f"{n:>7} {got:>10,} {t_ours:>9.3f} {t_old:>9.3f} {t_old / t_ours:>11.0f}x")
        else:
            print(f"{n:>7} {got:>10,} {t_ours:>9.3f} {'not run':>9} {'':>12}")
    big = counts[-1]
    print(f"\ncommand: zonectl export --nodes FILE ({big:,} Node objects, {args.zones} zones), seconds end to end")
    with tempfile.TemporaryDirectory(prefix="zonectl-export-") as tmp:
        work = Path(tmp)
        node_file(work / "nodes.json", big)
        zone_file(work / "zones.yaml", args.zones)
        for fmt in FORMATS:
            print(f"  --format {fmt:<10} {command(work, fmt):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
