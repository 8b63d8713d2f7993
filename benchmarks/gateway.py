#!/usr/bin/env python3
"""Egress gateway benchmark: what the zone filter costs, how far NAT64 scales, how fast rules are applied.

Figures vary from run to run on shared machines; compare the ratios, which come from the same run.
Everything runs in network namespaces this script creates (zonectl.harness.gateway_testbed) and removes.

1. Throughput (iperf3, TCP, pod -> IPv4 server), every path measured in each round, rounds alternating
   in order (ABBA) so drift on a shared machine hits all paths alike; ratio = median of per-round ratios:
     kernel     IPv6 forwarding only (pod -> IPv6 address of the "internet" namespace, no Tayga)
     tayga      NAT64 through Tayga + masquerade, no zone filter
     filter     the same with zonectl's filter (nftables, the default) for a realistic policy set
     filter1k   1,000 rules all in the pod's zone, the one that matches its traffic last, 50 other zones
     filter10k  the same with 10,000 rules
     ip6t1k     filter1k with the ip6tables backend (rules walked in order: the old cost)
   Target: each filter path within 5% of Tayga alone (ratio >= 0.95).
2. NAT64 beyond one core: aggregate throughput of many flows (pods x parallel streams, to several iperf3
   servers at once) with 1 Tayga instance vs N behind the ECMP route, alternating; and what the IPv4
   server sees per zone (the shared pool's masquerade address, a zone's own address) and how the
   packets spread over the instances.
3. Applying N rules (default 10,000, 50 zones): render (partition + text), one ``nft -f`` into a fresh
   namespace and replacing it, vs one ``ip6tables-restore`` of the same rules. Target: nft -f <= 0.5 s.

Run as root:  python3 benchmarks/gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
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
from zonectl.harness.gateway_testbed import SERVER_V4, TCP_PORT, UPLINK, Testbed  # noqa: E402
from zonectl.harness.netns import Netns  # noqa: E402
from zonectl.render import ip6tables, nftables  # noqa: E402

CONFIG = parse_config({"layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"}})
POD_ZONE, WEB_ZONE = 0x2000, 0x2100
GW6, INET6 = "fd00:ffff::1", "fd00:ffff::2"
IPERF_PORT = 5201
TARGET4 = f"fd64:ff9b::{SERVER_V4}"
PATHS = ("kernel", "tayga", "filter", "filter1k", "filter10k", "ip6t1k")


# --- inputs -------------------------------------------------------------------------------------
def policy(name: str, zones: list[str], egress: list[dict], default: str | None = "Deny") -> dict:
    spec: dict = {"zones": zones, "priority": 100, "ingress": [], "egress": egress}
    if default:
        spec["defaultAction"] = {"egress": default}
    return {"kind": "SecurityZonePolicy", "metadata": {"name": name, "namespace": "bench"}, "spec": spec}


def zones_yaml(n: int) -> list[dict]:
    zones = [{"kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": {"id": POD_ZONE}}]
    zones += [{"kind": "SecurityZone", "metadata": {"name": f"z{i}"}, "spec": {"id": 0x100 + i}} for i in range(n)]
    return zones


def realistic_policies() -> list[dict]:
    """A three-tier-like set: a handful of IPv4 destinations per zone, every zone fail closed."""
    ports = [{"protocol": "TCP", "port": p} for p in (443, 80, IPERF_PORT)] + [{"protocol": "UDP", "port": 53}]
    return [policy(name, [name], [{"name": "web", "action": "Allow", "to": [{"nat64": {"cidrs": cidrs}}], "ports": ports}])
            for name, cidrs in (("z0", ["198.51.100.0/24"]), ("z1", ["203.0.113.0/24", "198.51.100.0/25"]),
                                ("dmz", ["192.0.2.0/24", "198.51.100.0/24"]))]


def worst_case(n_rules: int, seed: int = 7) -> tuple[list, ZoneRegistry]:
    """``n_rules`` rules, all of the pod's zone, the one that matches the pod's traffic last (each a /24
    and a port of its own); 50 other zones sort before it in the zone dispatch."""
    rnd = random.Random(seed)
    zones = [{"kind": "SecurityZone", "metadata": {"name": f"a{i}"}, "spec": {"id": 0x100 + i}} for i in range(50)]
    zones.append({"kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": {"id": POD_ZONE}})
    reg = ZoneRegistry.from_objects(CONFIG.layout, zones)
    pols = [policy(f"a{i}", [f"a{i}"], []) for i in range(50)]
    nets = rnd.sample(range(1, 0xC00000), n_rules - 1)  # /24s below 192.0.0.0: never the server's
    egress = [{"name": f"r{i}", "action": "Allow", "to": [{"nat64": {"cidrs": [str(IPv4Network((n << 8, 24)))]}}],
               "ports": [{"protocol": "TCP", "port": rnd.randrange(6000, 60000)}]} for i, n in enumerate(nets)]
    egress.append({"name": "iperf", "action": "Allow", "to": [{"nat64": {"cidrs": ["192.0.2.0/24"]}}],
                   "ports": [{"protocol": "TCP", "port": IPERF_PORT, "endPort": IPERF_PORT + 9}]})
    # a policy holds at most 200 rules per direction: chain policies by priority, the matching rule last
    for k in range(0, len(egress), 200):
        pols.append(policy(f"pod{k // 200}", ["dmz"], egress[k:k + 200], None))
        pols[-1]["spec"]["priority"] = 100 + k // 200
    rules = compile_objects(pols, reg, CONFIG.nat64).for_gateway()
    dmz = [r for r in rules if r.zone == "dmz" and not r.is_default]
    assert len(dmz) == n_rules and dmz[-1].port_min == IPERF_PORT, "the matching rule must be the last one"
    return list(rules), reg


def zone_matches(reg: ZoneRegistry) -> list[ip6tables.ZoneMatch]:
    return [ip6tables.ZoneMatch(z.name, reg.match(z.name)) for z in reg]


# --- throughput ---------------------------------------------------------------------------------
def iperf(ns: Netns, target: str, seconds: float, port: int = IPERF_PORT, streams: int = 1) -> subprocess.Popen:
    return ns.popen(["iperf3", "-c", target, "-p", str(port), "-t", str(seconds), "-P", str(streams), "-J"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def received(proc: subprocess.Popen, seconds: float) -> float:
    out, err = proc.communicate(timeout=seconds + 60)
    body = json.loads(out) if out.strip().startswith("{") else {}
    if proc.returncode != 0 or "error" in body or "sum_received" not in body.get("end", {}):
        raise RuntimeError(f"iperf3 failed: {body.get('error') or out[-400:]} {err[-400:]}")
    return body["end"]["sum_received"]["bits_per_second"]


def unhook(host: Host, nat64) -> None:
    """No zone filter at all: zonectl's nft table gone, no ip6tables jump."""
    host.run(["nft", "-f", "-"], input=nftables.render_delete("ip6", nftables.FILTER_TABLE))
    for table, builtin, chain in (("filter", "FORWARD", ip6tables.FWD_CHAIN), ("mangle", "PREROUTING", ip6tables.MARK_CHAIN)):
        spec = ip6tables.jump_spec(builtin, nat64, chain)
        if host.run(["ip6tables", "-t", table, "-C", *spec], check=False).returncode == 0:
            host.run(["ip6tables", "-t", table, "-D", *spec])


def throughput(seconds: float, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in PATHS}
    pod = str(CONFIG.layout.encode("fd00:10:244:2::/64", POD_ZONE, 5))
    nat64 = CONFIG.nat64.match()
    with Testbed.create({"dmz": pod}, server=False) as bed:
        g, i = bed.gateway, bed.internet
        g.run(["ip", "-6", "addr", "add", f"{GW6}/64", "dev", UPLINK, "nodad"])
        i.run(["ip", "-6", "addr", "add", f"{INET6}/64", "dev", "eth0", "nodad"])
        i.run(["ip", "-6", "route", "add", "fd00:10:244::/48", "via", GW6])
        servers = [i.popen(["iperf3", "-s", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        host = Host(g.name)
        gw = Gateway(parse_gateway({"uplink": UPLINK, "stateDir": str(bed.workdir / "state"), "metrics": {"listen": None}}),
                     host)
        try:
            reg = ZoneRegistry.from_objects(CONFIG.layout, zones_yaml(50))
            gw.apply_inputs(CONFIG.nat64, reg, compile_objects(realistic_policies(), reg, CONFIG.nat64))
            assert gw.plan is not None
            texts = {"filter": gw.plan.nft_filter_text()}
            for n, key in ((1000, "filter1k"), (10_000, "filter10k")):
                rules, big = worst_case(n)
                texts[key] = nftables.render_filter(rules, nat64, zone_matches(big))
                if n == 1000:
                    texts["ip6t1k"] = ip6tables.render_restore(rules, nat64, zone_matches(big), jumps=("FORWARD",))
            pod_ns = bed.pods["dmz"].ns
            time.sleep(0.3)
            received(iperf(pod_ns, TARGET4, 1), 1)  # warm up: Tayga mapping, conntrack, caches

            def measure(target: str) -> float:
                """One iperf3 run; once more if it failed (the server can exit on a client's error: restarted)."""
                for attempt in (1, 2):
                    try:
                        return received(iperf(pod_ns, target, seconds), seconds)
                    except RuntimeError:
                        if attempt == 2:
                            raise
                        if servers[-1].poll() is not None:
                            servers.append(i.popen(["iperf3", "-s", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
                        time.sleep(1)
                raise AssertionError("unreachable")

            def run(key: str) -> None:
                if key == "kernel":
                    results[key].append(measure(INET6))
                    return
                unhook(host, nat64)
                if key == "ip6t1k":
                    host.run(["ip6tables-restore", "--noflush"], input=texts[key])
                elif key != "tayga":
                    host.run(["nft", "-f", "-"], input=texts[key])
                results[key].append(measure(TARGET4))
                if key.startswith("filter"):  # the filter was on the path: its allow counter moved
                    counters = gw.nft.counters("ip6", nftables.FILTER_TABLE)
                    assert any(c.field("zone") == "dmz" and c.field("action") == "allow" and c.packets for c in counters)

            for r in range(rounds):  # ABBA: every other round reversed, so a trend hits all paths alike
                for key in (PATHS if r % 2 == 0 else PATHS[::-1]):
                    run(key)
        finally:
            unhook(host, nat64)
            gw.close(cleanup=True)
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
    return results


# --- NAT64 beyond one core ----------------------------------------------------------------------
def scaling(seconds: float, rounds: int, instances: int, pods: int, streams: int) -> dict:
    """Aggregate throughput of ``pods`` pods of one zone (shared pool) x ``streams`` flows each, 1 vs
    ``instances`` Tayga instances; each pod has an iperf3 server of its own. Then which source address the
    IPv4 server sees from that zone and from a zone with a pool of its own (also spread over instances)."""
    labels = {f"dmz-{k}": str(CONFIG.layout.encode("fd00:10:244:2::/64", POD_ZONE, 5 + k)) for k in range(pods)}
    labels["web-0"] = str(CONFIG.layout.encode("fd00:10:244:2::/64", WEB_ZONE, 5))
    senders = [label for label in labels if label.startswith("dmz")]
    zones = [{"kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": {"id": POD_ZONE}},
             {"kind": "SecurityZone", "metadata": {"name": "web"},
              "spec": {"id": WEB_ZONE, "egress": {"pool": "100.64.21.0/24", "address": "198.51.100.21"}}}]
    reg = ZoneRegistry.from_objects(CONFIG.layout, zones)
    rules = compile_objects([policy("all", ["dmz", "web"], [{
        "name": "bench", "action": "Allow", "to": [{"nat64": {"cidrs": ["192.0.2.0/24"]}}],
        "ports": [{"protocol": "TCP", "port": IPERF_PORT, "endPort": IPERF_PORT + 99},
                  {"protocol": "TCP", "port": TCP_PORT, "endPort": TCP_PORT}]}])], reg, CONFIG.nat64)
    out: dict = {"bps": {1: [], instances: []}, "spread": {}, "seen": {}}
    with Testbed.create(labels) as bed:
        servers = [bed.internet.popen(["iperf3", "-s", "-p", str(IPERF_PORT + 1 + k)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for k in range(len(senders))]
        base = {"uplink": UPLINK, "stateDir": str(bed.workdir / "state"), "metrics": {"listen": None}}
        gw = Gateway(parse_gateway(base), Host(bed.gateway.name))
        configs = {n: parse_gateway({**base, "tayga": {"instances": n, "zoneInstances": n, "hash": "flow"}})
                   for n in (1, instances)}

        def flows(n: int, duration: float) -> list[subprocess.Popen]:
            gw.cfg = configs[n]
            gw.apply_inputs(CONFIG.nat64, reg, rules)
            time.sleep(0.5)  # the servers finish the previous test
            return [iperf(bed.pods[label].ns, TARGET4, duration, IPERF_PORT + 1 + k, streams)
                    for k, label in enumerate(senders)]

        try:
            time.sleep(1)
            for r in range(rounds):
                for n in ((1, instances) if r % 2 == 0 else (instances, 1)):
                    out["bps"][n].append(sum(received(p, seconds) for p in flows(n, seconds)))
            procs = flows(instances, 2)
            before = {name: _tun_tx(gw.host, p.tun) for name, p in gw.taygas.items()}
            for p in procs:
                received(p, 2)
            out["spread"] = {name: _tun_tx(gw.host, gw.taygas[name].tun) - tx for name, tx in sorted(before.items())
                             if name.startswith("shared")}
            for label in labels:  # the testbed's echo server answers with the source address it saw
                out["seen"].setdefault(label.split("-")[0], set()).add(bed.probe(label, "tcp", TARGET4))
        finally:
            gw.close(cleanup=True)
            for s in servers:
                s.terminate()
                s.wait(timeout=10)
    return out


def _tun_tx(host: Host, tun: str) -> int:
    with host.iproute() as ip:
        (link,) = ip.get_links(ifname=tun)
        return int(link.get_attr("IFLA_STATS64")["tx_packets"])


# --- apply speed --------------------------------------------------------------------------------
def apply_speed(n_rules: int) -> dict[str, float]:
    rules, reg = worst_case(n_rules, seed=11)
    nat64 = CONFIG.nat64.match()
    zm = zone_matches(reg)
    t = time.perf_counter()
    text = nftables.render_filter(rules, nat64, zm)
    out: dict[str, float] = {"rules": float(len(rules)), "render": time.perf_counter() - t}
    restore = ip6tables.render_restore(rules, nat64, zm)
    with Netns.create("ztbn") as ns:
        host = Host(ns.name)
        for key, cmd, body in (("nft", ["nft", "-f", "-"], text), ("nft_replace", ["nft", "-f", "-"], text),
                               ("ip6tables", ["ip6tables-restore", "--noflush"], restore)):
            t = time.perf_counter()
            host.run(cmd, input=body)
            out[key] = time.perf_counter() - t
        listing = host.run(["nft", "list", "table", "ip6", nftables.FILTER_TABLE]).stdout
        assert listing.count(": goto allow.dmz") >= n_rules, "every rule is an element of the zone's map"
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter iperf3 runs and fewer rounds (~1.5 minutes)")
    ap.add_argument("--seconds", type=float, help="iperf3 duration per run (default 4, quick 2)")
    ap.add_argument("--rounds", type=int, help="alternating rounds (default 7, quick 3)")
    ap.add_argument("--rules", type=int, default=10_000, help="rules for the apply benchmark (default 10000)")
    ap.add_argument("--instances", type=int, default=2, help="Tayga instances per pool to compare with 1 (default 2)")
    ap.add_argument("--pods", type=int, default=4, help="pods sending at once in the scaling test (default 4)")
    ap.add_argument("--streams", type=int, default=4, help="parallel TCP streams per pod (default 4)")
    ap.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    rounds = args.rounds or (3 if args.quick else 7)
    started = time.perf_counter()
    print(f"{os.cpu_count()} cores, load average at start {load()}")

    tp = throughput(seconds, rounds)
    med = {k: statistics.median(v) for k, v in tp.items()}
    paired = {k: statistics.median(a / b for a, b in zip(v, tp["tayga"], strict=True)) for k, v in tp.items()}
    print(f"\nThroughput, iperf3 TCP pod -> server, {rounds} alternating (ABBA) rounds of {seconds:g}s; "
          "ratio = median of per-round ratios")
    print(f"  {'path':<52} {'Gbit/s':>8}  {'vs Tayga alone':>14}  {'per-round range':>15}  target")
    labels = {"kernel": "kernel IPv6 forwarding only (no NAT64)", "tayga": "Tayga + masquerade, no zone filter",
              "filter": "Tayga + zone filter, realistic set (nftables)",
              "filter1k": "  1,000 rules in one zone, match last (nftables)",
              "filter10k": "  10,000 rules in one zone, match last (nftables)",
              "ip6t1k": "  1,000 rules in one zone, match last (ip6tables)"}
    for key in PATHS:
        ratios = [a / b for a, b in zip(tp[key], tp["tayga"], strict=True)]
        target = ""
        if key.startswith("filter"):
            target = f">= 0.95 {'OK' if paired[key] >= 0.95 else 'MISSED'}"
        print(f"  {labels[key]:<52} {med[key] / 1e9:>8.3f}  {paired[key]:>13.3f}x  "
              f"{min(ratios):.2f}-{max(ratios):.2f}{'':>6}  {target}")

    sc = scaling(seconds, rounds, args.instances, args.pods, args.streams)
    one, many = sc["bps"][1], sc["bps"][args.instances]
    ratios = [b / a for a, b in zip(one, many, strict=True)]
    ratio = statistics.median(ratios)
    print(f"\nNAT64 beyond one core: {args.pods} pods of one zone x {args.streams} TCP streams at once (hash: flow), "
          f"{rounds} alternating rounds of {seconds:g}s")
    print(f"  1 Tayga instance:  {statistics.median(one) / 1e9:.3f} Gbit/s aggregate")
    print(f"  {args.instances} Tayga instances: {statistics.median(many) / 1e9:.3f} Gbit/s aggregate  "
          f"-> {ratio:.2f}x (per-round {min(ratios):.2f}-{max(ratios):.2f}; {os.cpu_count()} cores)")
    total = sum(sc["spread"].values()) or 1
    print("  packets per instance: " + ", ".join(f"{k} {v / total:.0%}" for k, v in sc["spread"].items()))
    for zone, seen in sorted(sc["seen"].items()):
        print(f"  IPv4 server sees zone {zone} as {', '.join(sorted(str(s) for s in seen))}")

    ap_ = apply_speed(args.rules)
    print(f"\nApplying {int(ap_['rules'])} rules (one zone's {args.rules} + 50 closed zones) to a fresh namespace")
    print(f"  {'step':<52} {'seconds':>8}")
    for key, label in (("render", "render (partition into verdict maps + text)"), ("nft", "nft -f, zonectl's table (atomic)"),
                       ("nft_replace", "nft -f, replacing the loaded table"),
                       ("ip6tables", "ip6tables-restore of the same rules (atomic)")):
        print(f"  {label:<52} {ap_[key]:>8.3f}")
    ok = ap_["nft"] <= 0.5 and ap_["nft_replace"] <= 0.5
    print(f"  nft -f {ap_['nft']:.3f}s / {ap_['nft_replace']:.3f}s (target <= 0.5 s) -> {'OK' if ok else 'MISSED'}; "
          f"{ap_['ip6tables'] / ap_['nft']:.1f}x faster than ip6tables-restore")
    print(f"\ntotal {time.perf_counter() - started:.0f}s, load average at end {load()}")
    if args.json:
        print(json.dumps({"throughput_bps": tp, "paired_ratio": paired, "scaling": {
            "bps": {str(k): v for k, v in sc["bps"].items()}, "spread": sc["spread"],
            "seen": {k: sorted(map(str, v)) for k, v in sc["seen"].items()}}, "apply_s": ap_}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
