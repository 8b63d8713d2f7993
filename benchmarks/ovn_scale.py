#!/usr/bin/env python3
"""OVN scale: the example zone policies two ways, on real OVN, for 100 / 1,000 / 10,000 pods.

    baseline  OVN-Kubernetes style: per zone an address set of its pod IPs and a port group of its pods;
              each rule is an ACL on the zone's port group naming the peer zone's address set.
    zonectl   one ACL per rule, shared by every node switch, matching zone masks; no per-pod rows.

Per pod count and approach, in a fresh sandbox (NB + SB ovsdb-server, ovn-northd, one chassis: ovs-vswitchd
with the userspace datapath and ovn-controller), over --nodes node switches behind ovn_cluster_router:

  * NB rows the approach writes (ACL, Address_Set, Port_Group rows);
  * SB logical flows and OpenFlow flows on the chassis it adds, *marginal* over a base that already has
    OVN's conntrack flows (one stateful allow-from-node ACL per node switch, as OVN-K always has), see
    "Benchmarks: how to count fairly" in ARCHITECTURE.md;
  * convergence: time from the write to northd done (--wait=sb) and to ovn-controller done (--wait=hv);
  * 100 pod creations: NB transactions and rows the policy layer writes (from the NB transaction log),
    and the time for the chassis to converge after them; plus single-pod events waited on one by one.

Everything is printed beside the baseline, as a ratio, from the same run. Usage:

    python benchmarks/ovn_scale.py            # 100, 1000, 10000 pods (a few minutes on 2 cores)
    python benchmarks/ovn_scale.py --quick    # 100 and 1000 pods
    python benchmarks/ovn_scale.py --pods 500 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zonectl.core.config import parse_config  # noqa: E402
from zonectl.core.layout import AddrMatch  # noqa: E402
from zonectl.core.rules import Rule, RuleSet, compile_objects  # noqa: E402
from zonectl.core.zones import ZoneRegistry  # noqa: E402
from zonectl.inputs import load_documents, of_kind, read_mapping  # noqa: E402
from zonectl.ovn.connection import connect  # noqa: E402
from zonectl.harness.sandbox import OvnSandbox  # noqa: E402
from zonectl.ovn.sync import SyncSettings, sync  # noqa: E402
from zonectl.harness.ovnk import batch, q  # noqa: E402
from zonectl.harness.ovnk_cluster import Cluster, Pod  # noqa: E402
from zonectl.render.ovn_match import AclSettings, assign_priorities  # noqa: E402

EXAMPLES = ROOT / "examples"
POLICY_TABLES = ("ACL", "Address_Set", "Port_Group")


# ----- inputs ---------------------------------------------------------------------------------------

def load_example(policies: Path = EXAMPLES / "policies.yaml") -> tuple:
    config = parse_config(read_mapping(EXAMPLES / "config.yaml"))
    zones = ZoneRegistry.from_objects(config.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))
    rules = compile_objects(of_kind(load_documents([policies]), "SecurityZonePolicy"), zones, config.nat64)
    return config, zones, rules


# ----- the baseline: OVN-K's NetworkPolicy shape ----------------------------------------------------

def _pg(zone: str) -> str:
    return f"zone_{zone}"


def _as(zone: str) -> str:
    return f"zone_{zone}_v6"


def baseline_acls(rules: RuleSet, zones: ZoneRegistry) -> list[tuple[str, list[str]]]:
    """(port group, ovn-nbctl create ACL args) per rule: peers that are zones become address sets."""
    by_match: dict[AddrMatch, str] = {}
    for z in zones:
        for scope in ("cluster", "datacenter"):
            try:
                by_match[zones.layout.zone_match(z.id, scope)] = z.name
            except Exception:
                pass
    prio = assign_priorities(rules, AclSettings())
    out: list[tuple[str, list[str]]] = []
    for r in rules:
        port = f"inport == @{_pg(r.zone)}" if r.direction == "egress" else f"outport == @{_pg(r.zone)}"
        remote = r.dst if r.direction == "egress" else r.src
        field_ = "ip6.dst" if r.direction == "egress" else "ip6.src"
        terms = [port]
        if remote is not None:
            peer = by_match.get(remote)
            terms.append(f"{field_} == ${_as(peer)}" if peer else f"{field_} == {remote.cidr_or_mask}")
        else:
            terms.append("ip6")
        if r.protocol == "icmpv6":
            terms.append(f"icmp6.type == {r.icmp_type}" if r.icmp_type is not None else "icmp6")
        elif r.protocol and r.port_min is not None:
            terms.append(f"{r.protocol}.dst == {r.port_min}" if r.port_max in (None, r.port_min)
                         else f"{r.protocol}.dst >= {r.port_min} && {r.protocol}.dst <= {r.port_max}")
        elif r.protocol:
            terms.append(r.protocol)
        action = "allow-related" if r.action == "allow" else "drop"
        direction = "from-lport" if r.direction == "egress" else "to-lport"
        out.append((_pg(r.zone), [f"direction={direction}", f"priority={prio[r.id]}", f"action={action}",
                                  f"match={q(' && '.join(terms))}",
                                  "external_ids:k8s.ovn.org/owner-controller=default-network-controller"]))
    return out


def apply_baseline(sb: OvnSandbox, rules: RuleSet, zones: ZoneRegistry, pods: list[Pod]) -> None:
    """Address sets and port groups of every zone's pods, then the ACLs, as OVN-K would write them."""
    names = {z.id: z.name for z in zones}
    uuids = lsp_uuids(sb)
    cmds: list[list[str]] = []
    for zid, zname in names.items():
        members = [p for p in pods if p.zone_id == zid]
        cmds.append(["create", "Address_Set", f"name={_as(zname)}",
                     "addresses=[" + ",".join(q(str(p.ip)) for p in members) + "]"])
        cmds.append(["create", "Port_Group", f"name={_pg(zname)}",
                     "ports=[" + ",".join(uuids[p.lport] for p in members) + "]"])
    batch(sb.nbctl, cmds, 1)
    acl_cmds = [[f"--id=@a{i}", "create", "ACL", *args, "--", "add", "Port_Group", pg, "acls", f"@a{i}"]
                for i, (pg, args) in enumerate(baseline_acls(rules, zones))]
    batch(sb.nbctl, acl_cmds, 200)


def lsp_uuids(sb: OvnSandbox) -> dict[str, str]:
    data = json.loads(sb.nbctl("--format=json", "--columns=_uuid,name", "list", "Logical_Switch_Port"))
    return {row[1]: row[0][1] for row in data["data"]}


# ----- measuring ------------------------------------------------------------------------------------

def count_rows(sb: OvnSandbox, table: str) -> int:
    return len(sb.nbctl("--bare", "--columns=_uuid", "list", table).split())


def policy_rows(sb: OvnSandbox) -> dict[str, int]:
    return {t: count_rows(sb, t) for t in POLICY_TABLES}


_RECORD = re.compile(r"^record (\d+):")
_TABLE = re.compile(r"^\s+table (\S+) ")


def txn_log(sb: OvnSandbox) -> list[list[str]]:
    """The NB transaction log: per record, the tables of the rows it changed."""
    out = sb.run(["ovsdb-tool", "-m", "show-log", str(sb.path("nb.db"))], timeout=300)
    records: list[list[str]] = []
    for line in out.splitlines():
        if _RECORD.match(line):
            records.append([])
        elif (m := _TABLE.match(line)) and records:
            records[-1].append(m.group(1))
    return records


@dataclass
class Result:
    approach: str
    pods: int
    nb_rows: dict[str, int] = field(default_factory=dict)
    lflows: int = 0
    flows: int = 0
    write_s: float = 0.0
    sb_s: float = 0.0
    hv_s: float = 0.0
    event_txns: int = 0
    event_policy_rows: int = 0
    events_hv_s: float = 0.0
    flows_after_events: int = 0
    single_event_ms: float = 0.0
    single_event_policy_rows: int = 0
    rule_flows: int = 0
    rule_lflows: int = 0
    rule_hv_s: float = 0.0


def bind_local_ports(sb: OvnSandbox, pods: list[Pod]) -> None:
    """This chassis is node1: bind one node1 pod of every zone there (OVS internal ports, no veth needed).

    ovn-controller installs a port group's ACL flows only where the group has local ports, so a node
    with no pod of a zone would make the baseline look cheaper than any real node is.
    """
    seen: set[int] = set()
    for pod in pods:
        if pod.node.index != 1 or pod.zone_id in seen:
            continue
        seen.add(pod.zone_id)
        name = f"zb{len(seen)}"
        sb.vsctl("add-port", "br-int", name, "--", "set", "Interface", name, "type=internal",
                 f"external_ids:iface-id={pod.lport}")


def settled_flows(sb: OvnSandbox, quiet: float = 2.0, timeout: float = 600.0) -> int:
    """The OpenFlow count once it has stopped moving for ``quiet`` seconds.

    ``--wait=hv`` can return before ovn-controller has installed the flows of datapaths it only just
    learned about (the SB monitor condition catches up asynchronously); on a loaded machine a count
    taken then misses thousands of pod flows and pollutes the marginal figure.
    """
    deadline = time.monotonic() + timeout
    last, since = sb.flow_count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        count = sb.flow_count()
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
    raise RuntimeError(f"OpenFlow count still moving after {timeout:.0f}s (last {last})")


def run_one(approach: str, n_pods: int, nodes: int, events: int, singles: int, config, zones, rules,
            log=print) -> Result:
    res = Result(approach, n_pods)
    layout = config.layout
    zone_ids = [z.id for z in zones]
    with OvnSandbox(chassis=True, start_timeout=120) as sb:
        cluster = Cluster(sb.nbctl, layout, node_count=nodes).build(gateways=False)
        pods = [cluster.pod(1 + i % nodes, zone_ids[i % len(zone_ids)], 16 + i // nodes) for i in range(n_pods)]
        t = time.monotonic()
        cluster.add_pods(pods, batch_size=500)
        # the fair base: OVN-K's stateful allow-from-node ACL on every node switch brings conntrack flows
        batch(sb.nbctl, ([f"--id=@n{nd.index}", "create", "ACL", "direction=to-lport", "priority=1001",
                          "action=allow-related", f"match={q(f'ip6.src == {nd.mgmt_ip}')}", "--", "add",
                          "Logical_Switch", nd.switch, "acls", f"@n{nd.index}"] for nd in cluster.nodes), 50)
        bind_local_ports(sb, pods)
        sb.wait_hv(900)
        log(f"    [{approach} {n_pods}] {len(pods)} pods built and bound in {time.monotonic() - t:.1f}s")
        base_rows, base_lflows, base_flows = policy_rows(sb), sb.lflow_count(), settled_flows(sb)

        nb = connect(sb.nb_remote, timeout=60) if approach == "zonectl" else None
        try:
            settings = SyncSettings.build({}, layout.cluster, nb.has_tier) if nb else None
            t0 = time.monotonic()
            if nb:
                report = sync(nb, rules, settings)
                assert report.applied
            else:
                apply_baseline(sb, rules, zones, pods)
            res.write_s = time.monotonic() - t0
            sb.wait_sb(900)
            res.sb_s = time.monotonic() - t0
            sb.wait_hv(900)
            res.hv_s = time.monotonic() - t0
            rows = policy_rows(sb)
            res.nb_rows = {k: rows[k] - base_rows[k] for k in rows}
            res.lflows = sb.lflow_count() - base_lflows
            res.flows = settled_flows(sb) - base_flows

            # 100 pod creations: what does the policy layer write?
            before = len(txn_log(sb))
            new = [cluster.pod(1 + i % nodes, zone_ids[i % len(zone_ids)], 0x8000 + i) for i in range(events)]
            t0 = time.monotonic()
            for p in new:
                pod_event(sb, approach, p, zones, nb, rules, settings)
            sb.wait_hv(900)
            res.events_hv_s = time.monotonic() - t0
            if nb:
                assert sync(nb, rules, settings).in_sync  # pods never change zonectl's rows
            records = txn_log(sb)[before:]
            res.event_txns = len(records)
            res.event_policy_rows = sum(1 for rec in records for t in rec if t in POLICY_TABLES)
            res.flows_after_events = settled_flows(sb) - base_flows

            # single pod events, each waited for on the chassis (median)
            times = []
            before = len(txn_log(sb))
            for i in range(singles):
                p = cluster.pod(1 + i % nodes, zone_ids[i % len(zone_ids)], 0x9000 + i)
                t0 = time.monotonic()
                pod_event(sb, approach, p, zones, nb, rules, settings)
                sb.wait_hv(900)
                times.append(time.monotonic() - t0)
            records = txn_log(sb)[before:]
            res.single_event_policy_rows = sum(1 for rec in records for t in rec if t in POLICY_TABLES)
            res.single_event_ms = statistics.median(times) * 1000 if times else 0.0

            # one more zone -> zone rule (dmz may reach db:5432): its marginal cost
            flows0, lflows0 = settled_flows(sb), sb.lflow_count()
            extra = extra_rule(zones)
            t0 = time.monotonic()
            if nb:
                assert sync(nb, [*rules, extra], settings).count("create") == 1
            else:
                (pg, args_), = baseline_acls(RuleSet((extra,)), zones)
                sb.nbctl("--id=@x", "create", "ACL", *args_, "--", "add", "Port_Group", pg, "acls", "@x")
            sb.wait_hv(900)
            res.rule_hv_s = time.monotonic() - t0
            res.rule_flows = settled_flows(sb) - flows0
            res.rule_lflows = sb.lflow_count() - lflows0
        finally:
            if nb is not None:
                nb.close()
    return res


def extra_rule(zones: ZoneRegistry) -> Rule:
    return Rule(id="rbe0c0000000000a", policy="bench/extra", zone="dmz", direction="egress", action="allow",
                order=1, src=zones.match("dmz"), dst=zones.match("db"), protocol="tcp", port_min=5432, port_max=5432,
                name="dmz-to-db")


def pod_event(sb: OvnSandbox, approach: str, p: Pod, zones: ZoneRegistry, nb, rules, settings) -> None:
    """A pod created: OVN-K writes its port; the baseline's policy layer adds it to its zone's AS and PG
    (in the same transaction, as OVN-K does). zonectl does not watch pods at all for OVN: nothing to do
    (run_one checks that a sync afterwards has nothing to write)."""
    addr = f"{p.mac} {p.ip}"
    cmd = ["--id=@lsp", "create", "Logical_Switch_Port", f"name={p.lport}", f"addresses={q(addr)}",
           f"port_security={q(addr)}", "--", "add", "Logical_Switch", p.node.switch, "ports", "@lsp"]
    if approach == "baseline":
        zone = zones.by_id(p.zone_id)
        cmd += ["--", "add", "Address_Set", _as(zone.name), "addresses", q(str(p.ip)),
                "--", "add", "Port_Group", _pg(zone.name), "ports", "@lsp"]
    sb.nbctl(*cmd)


# ----- report ---------------------------------------------------------------------------------------

def ratio(base: float, ours: float) -> str:
    if ours == 0:
        return "inf" if base else "="
    return f"{base / ours:,.1f}x"


def table(results: dict[int, dict[str, Result]]) -> str:
    lines = []
    head = f"{'pods':>6}  {'metric':42} {'baseline':>14} {'zonectl':>12} {'baseline/zonectl':>17}"
    lines += [head, "-" * len(head)]
    for n, pair in results.items():
        b, z = pair["baseline"], pair["zonectl"]
        rows = [
            ("NB rows written (ACL+Address_Set+Port_Group)", sum(b.nb_rows.values()), sum(z.nb_rows.values()), "{:,}"),
            ("SB logical flows added", b.lflows, z.lflows, "{:,}"),
            ("OpenFlow flows added on the node", b.flows, z.flows, "{:,}"),
            ("convergence: write (s)", b.write_s, z.write_s, "{:.2f}"),
            ("convergence: northd done (s)", b.sb_s, z.sb_s, "{:.2f}"),
            ("convergence: ovn-controller done (s)", b.hv_s, z.hv_s, "{:.2f}"),
            ("100 pod creations: NB txns (all writers)", b.event_txns, z.event_txns, "{:,}"),
            ("100 pod creations: policy-row writes", b.event_policy_rows, z.event_policy_rows, "{:,}"),
            ("100 pod creations: time to converge (s)", b.events_hv_s, z.events_hv_s, "{:.2f}"),
            ("100 pod creations: OpenFlow flows they add", b.flows_after_events - b.flows,
             z.flows_after_events - z.flows, "{:,}"),
            ("one pod event, waited on the node (ms, median)", b.single_event_ms, z.single_event_ms, "{:.1f}"),
            ("one more zone->zone rule: OpenFlow flows", b.rule_flows, z.rule_flows, "{:,}"),
            ("one more zone->zone rule: SB logical flows", b.rule_lflows, z.rule_lflows, "{:,}"),
            ("one more zone->zone rule: converge (s)", b.rule_hv_s, z.rule_hv_s, "{:.2f}"),
        ]
        for name, bv, zv, fmt in rows:
            lines.append(f"{n:>6,}  {name:42} {fmt.format(bv):>14} {fmt.format(zv):>12} {ratio(bv, zv):>17}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, nargs="+", help="pod counts (default 100 1000 10000)")
    ap.add_argument("--quick", action="store_true", help="100 and 1000 pods, fewer single events")
    ap.add_argument("--nodes", type=int, default=4, help="node switches (default 4)")
    ap.add_argument("--events", type=int, default=100, help="pod creations measured (default 100)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    ap.add_argument("--policies", type=Path, default=EXAMPLES / "policies.yaml",
                    help="SecurityZonePolicy file (default examples/policies.yaml; benchmarks/zone-policies.yaml has "
                         "only zone-to-zone rules, the NetworkPolicy-by-label case)")
    args = ap.parse_args(argv)
    # SIGTERM ends the run through the normal path, so every sandbox stops its daemons and removes its netns.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = args.pods or ([100, 1000] if args.quick else [100, 1000, 10000])
    singles = 3 if args.quick else 5
    config, zones, rules = load_example(args.policies)
    print(f"OVN scale benchmark: {len(rules)} compiled rules from {args.policies.name}, {len(list(zones))} zones, "
          f"{args.nodes} node switches, one chassis (userspace datapath)", flush=True)
    results: dict[int, dict[str, Result]] = {}
    started = time.monotonic()
    for n in counts:
        results[n] = {}
        for approach in ("baseline", "zonectl"):
            t = time.monotonic()
            results[n][approach] = run_one(approach, n, args.nodes, args.events, singles, config, zones, rules,
                                           log=lambda s: print(s, flush=True))
            print(f"  {approach:8} {n:>6} pods: done in {time.monotonic() - t:.0f}s", flush=True)
    print()
    print(table(results))
    z = [results[n]["zonectl"].flows for n in counts]
    spread = (max(z) - min(z)) / min(z) * 100 if min(z) else 0.0
    print(f"zonectl OpenFlow flows across pod counts: {z} (spread {spread:.1f}%: flat means < 5%)")
    biggest = counts[-1]
    print(f"at {biggest:,} pods the baseline adds {ratio(results[biggest]['baseline'].flows, results[biggest]['zonectl'].flows)} "
          f"the flows zonectl adds; zonectl policy-row writes for {args.events} pod creations: "
          f"{results[biggest]['zonectl'].event_policy_rows}")
    print(f"total {time.monotonic() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({n: {a: r.__dict__ for a, r in pair.items()}
                                               for n, pair in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
