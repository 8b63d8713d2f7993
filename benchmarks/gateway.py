#!/usr/bin/env python3
"""Egress gateway benchmark: what the zone filter costs, and how fast a ruleset is applied.

Figures vary from run to run on shared machines; compare the ratios, which come from the same run.

Everything runs in network namespaces this script creates (zonectl.harness.gateway_testbed) and removes.

1. Throughput (iperf3, TCP, pod -> IPv4 server), three paths measured in alternating rounds so
   drift on a shared machine hits all of them alike; the median of the rounds is reported:
     kernel   IPv6 forwarding only (pod -> IPv6 address of the "internet" namespace, no Tayga)
     tayga    NAT64 through Tayga + masquerade, zonectl's filter unhooked
     filter   the same with zonectl's filter hooked (realistic policy set), and
     filter1k the same with 1,000 rules, all in the pod's zone, its allow rule last, behind 50 other
              zones in the dispatch (worst case)
   Target: filter costs <= 5% of Tayga alone.
2. Applying N rules (default 1,000) to a fresh namespace: one ip6tables-restore (atomic) vs one
   ``ip6tables -A`` per rule, plus replacing the loaded set atomically and the nft -f equivalent.
   Target: atomic >= 10x faster than per-rule, and <= 0.2 s.

Run as root:  python3 benchmarks/gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from zonectl.core.config import parse_config  # noqa: E402
from zonectl.core.rules import compile_objects  # noqa: E402
from zonectl.core.zones import ZoneRegistry  # noqa: E402
from zonectl.gateway.config import parse_gateway  # noqa: E402
from zonectl.gateway.gateway import Gateway  # noqa: E402
from zonectl.gateway.host import Host  # noqa: E402
from zonectl.harness.gateway_testbed import SERVER_V4, UPLINK, Testbed  # noqa: E402
from zonectl.harness.netns import Netns  # noqa: E402
from zonectl.render import ip6tables, nftables  # noqa: E402

CONFIG = parse_config({"layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"}})
POD_ZONE = 0x2000
GW6, INET6 = "fd00:ffff::1", "fd00:ffff::2"
IPERF_PORT = 5201


# --- inputs -------------------------------------------------------------------------------------
def zones_yaml(n: int) -> list[dict]:
    zones = [{"kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": {"id": POD_ZONE}}]
    zones += [{"kind": "SecurityZone", "metadata": {"name": f"z{i}"}, "spec": {"id": 0x100 + i}} for i in range(n)]
    return zones


def realistic_policies() -> list[dict]:
    """A three-tier-like set: a handful of IPv4 destinations per zone, every zone fail closed."""
    pols = []
    for name, cidrs in (("z0", ["198.51.100.0/24"]), ("z1", ["203.0.113.0/24", "198.51.100.0/25"]),
                        ("dmz", ["192.0.2.0/24", "198.51.100.0/24"])):
        pols.append({"kind": "SecurityZonePolicy", "metadata": {"name": name, "namespace": "bench"}, "spec": {
            "zones": [name], "priority": 100, "defaultAction": {"egress": "Deny"}, "ingress": [],
            "egress": [{"name": "web", "action": "Allow", "to": [{"nat64": {"cidrs": cidrs}}],
                        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80},
                                  {"protocol": "TCP", "port": IPERF_PORT}, {"protocol": "UDP", "port": 53}]}]}})
    return pols


def many_rules(n_rules: int, pod_last: bool = True) -> tuple[list, list]:
    """Exactly ``n_rules`` compiled gateway rules over 50 zones; the pod zone's allow rule sorts last."""
    rnd = random.Random(42)
    zones = zones_yaml(50)
    reg = ZoneRegistry.from_objects(CONFIG.layout, zones)
    pols, count, p = [], 0, 0
    while count < n_rules - 1:
        rules = []
        for r in range(10):
            net = IPv4Network((rnd.randrange(0, 2**32) & 0xFFFFFF00, 24))
            rules.append({"name": f"r{r}", "action": "Allow", "to": [{"nat64": {"cidrs": [str(net)]}}],
                          "ports": [{"protocol": "TCP", "port": rnd.randrange(1, 60000)}]})
        pols.append({"kind": "SecurityZonePolicy", "metadata": {"name": f"p{p}", "namespace": "bench"},
                     "spec": {"zones": [f"z{p % 50}"], "priority": 100, "ingress": [], "egress": rules}})
        count += 10
        p += 1
    pols.append({"kind": "SecurityZonePolicy", "metadata": {"name": "pod", "namespace": "bench"}, "spec": {
        "zones": ["dmz"], "priority": 999, "ingress": [],
        "egress": [{"name": "iperf", "action": "Allow", "to": [{"nat64": {"cidrs": ["192.0.2.0/24"]}}],
                    "ports": [{"protocol": "TCP", "port": IPERF_PORT}]}]}})
    rules = list(compile_objects(pols, reg, CONFIG.nat64).for_gateway())
    pod_rule = [r for r in rules if r.zone == "dmz"]
    others = [r for r in rules if r.zone != "dmz"][: n_rules - len(pod_rule)]
    return (others + pod_rule if pod_last else pod_rule + others), zones


def worst_case_rules(n_rules: int) -> tuple[list, list]:
    """``n_rules`` rules, all of the pod's zone, the one that matches the pod's traffic last; 50 other
    zones sort before it, so a packet also walks the whole zone dispatch first."""
    rnd = random.Random(7)
    zones = [{"kind": "SecurityZone", "metadata": {"name": f"a{i}"}, "spec": {"id": 0x100 + i}} for i in range(50)]
    zones.append({"kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": {"id": POD_ZONE}})
    reg = ZoneRegistry.from_objects(CONFIG.layout, zones)
    pols = [{"kind": "SecurityZonePolicy", "metadata": {"name": f"a{i}", "namespace": "bench"},
             "spec": {"zones": [f"a{i}"], "priority": 100, "defaultAction": {"egress": "Deny"}, "ingress": [],
                      "egress": []}} for i in range(50)]
    egress = [{"name": f"r{i}", "action": "Allow",
               "to": [{"nat64": {"cidrs": [str(IPv4Network((rnd.randrange(0, 2**32) & 0xFFFFFF00, 24)))]}}],
               "ports": [{"protocol": "TCP", "port": rnd.randrange(6000, 60000)}]} for i in range(n_rules - 1)]
    egress.append({"name": "iperf", "action": "Allow", "to": [{"nat64": {"cidrs": ["192.0.2.0/24"]}}],
                   "ports": [{"protocol": "TCP", "port": IPERF_PORT}]})
    pols.append({"kind": "SecurityZonePolicy", "metadata": {"name": "pod", "namespace": "bench"},
                 "spec": {"zones": ["dmz"], "priority": 100, "ingress": [], "egress": egress}})
    rules = compile_objects(pols, reg, CONFIG.nat64).for_gateway()
    dmz = [r for r in rules if r.zone == "dmz" and not r.is_default]  # the zone's default Deny comes after
    assert len(dmz) == n_rules and dmz[-1].port_min == IPERF_PORT, "the matching rule must be the last one"
    return list(rules), zones


# --- throughput ---------------------------------------------------------------------------------
def iperf(bed: Testbed, target: str, seconds: float) -> float:
    proc = bed.pods["dmz"].ns.run(["iperf3", "-c", target, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"],
                                  check=False, timeout=seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"iperf3 to {target} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"]


def set_jumps(host: Host, nat64, on: bool) -> None:
    for table, builtin, chain in (("filter", "FORWARD", ip6tables.FWD_CHAIN), ("mangle", "PREROUTING", ip6tables.MARK_CHAIN)):
        spec = ip6tables.jump_spec(builtin, nat64, chain)
        present = host.run(["ip6tables", "-t", table, "-C", *spec], check=False).returncode == 0
        if on and not present:
            host.run(["ip6tables", "-t", table, "-I", builtin, "1", *spec[1:]])
        if not on and present:
            host.run(["ip6tables", "-t", table, "-D", *spec])


def throughput(seconds: float, rounds: int, n_rules: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"kernel": [], "tayga": [], "filter": [], "filter1k": []}
    pod = str(CONFIG.layout.encode("fd00:10:244:2::/64", POD_ZONE, 5))
    with Testbed.create({"dmz": pod}, server=False) as bed:
        g, i = bed.gateway, bed.internet
        g.run(["ip", "-6", "addr", "add", f"{GW6}/64", "dev", UPLINK, "nodad"])
        i.run(["ip", "-6", "addr", "add", f"{INET6}/64", "dev", "eth0", "nodad"])
        i.run(["ip", "-6", "route", "add", "fd00:10:244::/48", "via", GW6])
        server = i.popen(["iperf3", "-s", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host = Host(g.name)
        gw = Gateway(parse_gateway({"uplink": UPLINK, "stateDir": str(bed.workdir / "state"),
                                    "metrics": {"listen": None}}), host)
        try:
            reg = ZoneRegistry.from_objects(CONFIG.layout, zones_yaml(50))
            gw.apply_inputs(CONFIG.nat64, reg, compile_objects(realistic_policies(), reg, CONFIG.nat64))
            realistic_text = gw.plan.ip6tables_text(())
            big_rules, big_zones = worst_case_rules(n_rules)
            big_reg = ZoneRegistry.from_objects(CONFIG.layout, big_zones)
            big_text = ip6tables.render_restore(big_rules, CONFIG.nat64.match(),
                                                [ip6tables.ZoneMatch(z.name, big_reg.match(z.name)) for z in big_reg],
                                                jumps=())
            nat64 = CONFIG.nat64.match()
            time.sleep(0.3)
            target4 = f"fd64:ff9b::{SERVER_V4}"
            iperf(bed, target4, 1)  # warm up: Tayga mapping, conntrack, caches
            def run(key: str) -> None:
                if key == "kernel":
                    results[key].append(iperf(bed, INET6, seconds))
                    return
                set_jumps(host, nat64, key != "tayga")
                if key != "tayga":
                    host.run(["ip6tables-restore", "--noflush"], input=realistic_text if key == "filter" else big_text)
                results[key].append(iperf(bed, target4, seconds))

            order = ["kernel", "tayga", "filter", "filter1k"]
            for r in range(rounds):  # ABBA: every other round reversed, so a trend hits all paths alike
                for key in (order if r % 2 == 0 else order[::-1]):
                    run(key)
            counters = gw.ip6t.counters()
            assert any(c.field("zone") == "dmz" and c.packets > 0 for c in counters), "filter was not on the path"
        finally:
            gw.close()
            server.terminate()
            server.wait(timeout=10)
    return results


# --- apply speed --------------------------------------------------------------------------------
def apply_speed(n_rules: int) -> dict[str, float]:
    rules, zones = many_rules(n_rules, pod_last=False)
    zm: list[ip6tables.ZoneMatch] = []  # no per-zone drops: exactly n_rules + the fail-closed drop
    nat64 = CONFIG.nat64.match()
    text = ip6tables.render_restore(rules, nat64, zm)
    lines = ip6tables.render_per_rule_commands(rules, zm)
    out: dict[str, float] = {"rules": float(len(rules)), "calls": float(len(lines))}
    with Netns.create("ztbn") as ns:
        host = Host(ns.name)
        t = time.perf_counter()
        host.run(["ip6tables-restore", "--noflush"], input=text)
        out["atomic"] = time.perf_counter() - t
        t = time.perf_counter()
        host.run(["ip6tables-restore", "--noflush"], input=text.replace("-I FORWARD 1", "#").replace("-I PREROUTING 1", "#"))
        out["atomic_replace"] = time.perf_counter() - t
        save = host.run(["ip6tables-save", "-t", "filter"]).stdout
        loaded = len([l for l in save.splitlines() if l.startswith("-A ZONECTL-")])
        assert loaded == sum(1 for c in lines if c[0] == "-A"), (loaded, len(lines))
        zone_chains = [c for c in ip6tables.owned_chains(save) if c.startswith(ip6tables.ZONE_CHAIN_PREFIX)]
        for argv in ip6tables.render_cleanup(nat64, zone_chains):
            host.run(["ip6tables", *argv], check=False)
        t = time.perf_counter()
        for argv in lines:
            host.run(["ip6tables", *argv])
        out["per_rule"] = time.perf_counter() - t
        nft_text = nftables.render_filter(rules, nat64, zm)
        t = time.perf_counter()
        host.run(["nft", "-f", "-"], input=nft_text)
        out["nft"] = time.perf_counter() - t
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter iperf3 runs and fewer rounds (~1 minute)")
    ap.add_argument("--seconds", type=float, help="iperf3 duration per run (default 4, quick 2)")
    ap.add_argument("--rounds", type=int, help="alternating rounds (default 7, quick 3)")
    ap.add_argument("--rules", type=int, default=1000, help="rules for the apply benchmark and filter1k (default 1000)")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    rounds = args.rounds or (3 if args.quick else 7)
    started = time.perf_counter()

    tp = throughput(seconds, rounds, args.rules)
    med = {k: statistics.median(v) for k, v in tp.items()}
    # each round measures every path back to back: the median of per-round ratios cancels machine drift
    paired = {k: statistics.median(a / b for a, b in zip(v, tp["tayga"], strict=True)) for k, v in tp.items()}
    print(f"Throughput, iperf3 TCP pod -> server, {rounds} alternating (ABBA) rounds of {seconds:g}s; "
          "ratio = median of per-round ratios")
    print(f"  {'path':<44} {'Gbit/s':>8}  {'vs Tayga alone':>14}  {'per-round range':>15}")
    labels = {"kernel": "kernel IPv6 forwarding only (no NAT64)", "tayga": "Tayga + masquerade (filter unhooked)",
              "filter": "Tayga + zonectl filter (realistic set)",
              "filter1k": f"Tayga + {args.rules} rules in one zone, match last"}
    for key in ("kernel", "tayga", "filter", "filter1k"):
        ratios = [a / b for a, b in zip(tp[key], tp["tayga"], strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"  {labels[key]:<44} {med[key] / 1e9:>8.3f}  {paired[key]:>13.3f}x  {spread:>15}")
    cost = 1 - paired["filter"]
    print(f"  filter cost vs Tayga alone: {cost * 100:+.1f}% (target <= 5%) -> {'OK' if cost <= 0.05 else 'MISSED'}")

    ap_ = apply_speed(args.rules)
    n, calls = int(ap_["rules"]), int(ap_["calls"])
    version = subprocess.run(["ip6tables", "-V"], capture_output=True, text=True).stdout.split()[1]
    print(f"\nApplying {n} rules to a fresh namespace (ip6tables {version})")
    print(f"  {'method':<44} {'seconds':>8}  {'vs per-rule':>11}")
    for key, label in (("per_rule", f"one ip6tables call per rule/chain ({calls})"), ("atomic", "one ip6tables-restore (atomic)"),
                       ("atomic_replace", "ip6tables-restore replacing the loaded set"), ("nft", "nft -f (same rules, own table)")):
        print(f"  {label:<44} {ap_[key]:>8.3f}  {ap_['per_rule'] / ap_[key]:>10.1f}x")
    speed = ap_["per_rule"] / ap_["atomic"]
    ok = speed >= 10 and ap_["atomic"] <= 0.2
    print(f"  atomic is {speed:.0f}x faster, {ap_['atomic']:.3f}s (target >= 10x and <= 0.2 s) -> {'OK' if ok else 'MISSED'}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if args.json:
        print(json.dumps({"throughput_bps": tp, "median_bps": med, "paired_ratio": paired, "apply_s": ap_}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
