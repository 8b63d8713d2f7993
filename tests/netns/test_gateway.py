"""The egress gateway with real packets: zones allowed and denied, shared and own IPv4 egress,
Tayga supervision, idempotent re-apply, bad input refused, other people's rules untouched."""

from __future__ import annotations

import os
import signal
import urllib.request
from dataclasses import replace

import pytest

from promtext import samples

from gwlab import ALLOW_LAB, CONFIG, POD_ZONES, TARGET, ZONES, reach, reach_all, registry, ruleset, running
from zonectl.core.errors import ValidationError
from zonectl.core.nat64 import Nat64Prefix
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.gateway import GatewayError
from zonectl.metrics_server import Listen, MetricsServer
from zonectl.gateway.tayga_info import read_dynamic_map
from zonectl.harness.gateway_testbed import GATEWAY_V4
from zonectl.procs import wait_until

SERVER_ECHO = "fd64:ff9b::c000:20a"
BACKENDS = pytest.mark.parametrize("backend", ["nftables", "ip6tables"])


def filter_state(bed) -> str:
    """Everything either backend of the zone filter keeps in the kernel (without comment lines)."""
    return "\n".join(l for l in (bed.gateway.run(["ip6tables-save"]).stdout + bed.gateway.run(["nft", "list", "ruleset"]).stdout)
                     .splitlines() if not l.startswith("#"))


@BACKENDS
def test_zones_allowed_denied_and_each_zone_seen_by_its_egress_address(backend: str) -> None:
    with running(gateway={"filter": backend}) as (bed, gw):
        got = reach_all(bed, POD_ZONES)
        # shared pool: masqueraded to the uplink address
        assert got["dmz"] == (str(GATEWAY_V4), str(GATEWAY_V4), SERVER_ECHO)
        # own pools: each zone is SNATed to its own address, so IPv4-only firewalls still see the zone
        assert got["web"] == ("198.51.100.21", "198.51.100.21", SERVER_ECHO)
        assert got["api"] == ("198.51.100.22", "198.51.100.22", SERVER_ECHO)
        # a zone whose policy denies, a zone with no policy, an undefined zone id: all dropped
        for label in ("db", "batch", "rogue"):
            assert got[label] == (None, None, None), label
        # a port the policy does not allow is dropped even for an allowed zone
        assert bed.probe("dmz", "tcp", SERVER_ECHO, port=8081, timeout=0.5) is None
        totals = gw.status().zone_totals
        assert totals[("dmz", "allow")][0] > 0 and totals[("web", "allow")][0] > 0
        assert totals[("db", "deny")][0] > 0 and totals[("batch", "deny")][0] > 0
        assert totals[("-", "deny")][0] > 0  # the fail-closed rule caught the undefined zone
        assert ("db", "allow") not in totals or totals[("db", "allow")][0] == 0
        # each own-pool zone got its own Tayga instance and pool
        assert sorted(gw.taygas) == ["api", "shared", "web"]


@BACKENDS
def test_reapply_changes_no_rule_and_keeps_counters(backend: str) -> None:
    with running({"dmz": 0x2000}, gateway={"filter": backend}) as (bed, gw):
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        before = gw.filter.counters()
        assert [c for c in before if c.field("zone") == "dmz" and c.packets]
        state = filter_state(bed)
        reg = registry()
        report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
        assert report.changes == []
        assert gw.filter.counters() == before  # nothing was reloaded: counters are intact
        assert filter_state(bed) == state


def test_killed_tayga_is_restarted_and_traffic_flows_again() -> None:
    with running({"dmz": 0x2000}) as (bed, gw):
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        shared = gw.taygas["shared"]
        old_pid = shared.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_until(lambda: shared.restarts == 1 and shared.pid not in (None, old_pid), 10, "Tayga restarted")
        assert shared.wait_up(timeout=10)
        assert reach(bed, "dmz") == (str(GATEWAY_V4), str(GATEWAY_V4), SERVER_ECHO)
        assert samples(gw.metrics_text())['zonectl_tayga_restarts_total{instance="shared"}'] == 1
        assert samples(gw.metrics_text())['zonectl_tayga_up{instance="shared"}'] == 1


def test_config_change_is_a_controlled_restart_that_keeps_dynamic_map() -> None:
    with running({"dmz": 0x2000}) as (bed, gw):
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        shared = gw.taygas["shared"]
        old_pid = shared.pid
        cfg = parse_gateway({"uplink": "uplink", "stateDir": gw.cfg.state_dir, "metrics": {"listen": None},
                             "staticMaps": [{"ipv4": "198.51.100.80", "ipv6": "fd00:10:96::80"}]})
        gw.cfg = cfg
        reg = registry()
        report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
        # the map also brings its route and the rule accepting the mapped service's replies
        assert report.changes == ["zone filter (nftables)", "tayga shared restarted with new config", "routes (1)"]
        assert shared.pid not in (None, old_pid) and shared.restarts == 0  # controlled, not a crash
        assert "map 198.51.100.80 fd00:10:96::80" in shared.conf_path.read_text()
        (entry,) = read_dynamic_map(shared.data_dir)  # written on SIGTERM, read back by the new process
        assert entry.ipv6 == bed.pods["dmz"].address
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        assert samples(gw.metrics_text())['zonectl_tayga_dynamic_mappings{instance="shared"}'] == 1


def test_bad_input_is_refused_and_previous_state_keeps_running() -> None:
    with running({"dmz": 0x2000, "db": 0x3000}) as (bed, gw):
        pid = gw.taygas["shared"].pid
        rules_before = filter_state(bed)
        reg = registry()
        # 1. a policy that does not compile never reaches the gateway (the core refuses it)
        with pytest.raises(ValidationError, match="unknown zone"):
            ruleset(ALLOW_LAB.replace("zones: [db]", "zones: [nope]"), reg)
        # 2. the well-known prefix with a non-global destination: refused with the reason and a fix
        wkpf = Nat64Prefix.parse("64:ff9b::/96")
        with pytest.raises(GatewayError, match=r"well-known prefix.*192.0.2.0/24.*fd64:ff9b::/96") as exc:
            gw.apply_inputs(wkpf, reg, ruleset(ALLOW_LAB, reg, wkpf))
        assert "previous state kept" in str(exc.value)
        # 3. a zone pool overlapping the shared pool
        bad_zones = ZONES.replace("100.64.21.0/24", "100.64.0.0/25")
        with pytest.raises(GatewayError, match="overlaps"):
            gw.apply_inputs(CONFIG.nat64, registry(bad_zones), ruleset(ALLOW_LAB, registry(bad_zones)))
        # 4. an uplink that does not exist (found in pre-flight, before anything is touched)
        gw.cfg = parse_gateway({"uplink": "nosuchlink", "stateDir": gw.cfg.state_dir})
        with pytest.raises(GatewayError, match="nosuchlink does not exist"):
            gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB.replace("8080", "8081"), reg))
        assert gw.taygas["shared"].pid == pid
        assert filter_state(bed) == rules_before
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4) and reach(bed, "db", 0.5)[0] is None
        assert samples(gw.metrics_text())['zonectl_gateway_applies_total{result="error"}'] == 3


@BACKENDS
def test_policy_change_applies_atomically(backend: str) -> None:
    with running({"dmz": 0x2000}, gateway={"filter": backend}) as (bed, gw):
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        reg = registry()
        deny = ALLOW_LAB.replace("action: Allow", "action: Deny")
        report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(deny, reg))
        assert report.changes == [f"zone filter ({backend})"]
        assert reach(bed, "dmz", 0.5) == (None, None, None)


def test_switching_backends_never_leaves_traffic_unfiltered() -> None:
    """ip6tables -> nftables -> ip6tables: each switch installs the new filter, then removes the old one;
    the verdicts stay the policy's throughout and nothing of the old backend is left."""
    with running({"dmz": 0x2000, "db": 0x3000}, gateway={"filter": "ip6tables"}) as (bed, gw):
        reg = registry()
        for backend, gone in (("nftables", "ip6tables"), ("ip6tables", "nftables")):
            gw.cfg = replace(gw.cfg, filter=backend)
            report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
            assert report.changes == [f"zone filter ({backend})", f"zone filter ({gone}) removed"]
            assert ("ZONECTL" in bed.gateway.run(["ip6tables-save"]).stdout) == (backend == "ip6tables")
            assert ("table ip6 zonectl" in bed.gateway.run(["nft", "list", "tables"]).stdout) == (backend == "nftables")
            got = reach_all(bed, ["dmz", "db"], 0.5)
            assert got["dmz"][0] == str(GATEWAY_V4) and got["db"] == (None, None, None)
            assert gw.filter.counters() and gw.drift() == []


@BACKENDS
def test_rules_of_others_are_untouched(backend: str) -> None:
    with running({"dmz": 0x2000}, gateway={"filter": backend}) as (bed, gw):
        g = bed.gateway
        g.run(["ip6tables", "-N", "OTHER"])
        g.run(["ip6tables", "-A", "OTHER", "-s", "2001:db8::/32", "-j", "ACCEPT"])
        g.run(["ip6tables", "-I", "FORWARD", "1", "-s", "2001:db8:1::/48", "-j", "OTHER"])
        g.run(["ip6tables", "-t", "mangle", "-A", "PREROUTING", "-s", "2001:db8:2::/48", "-j", "MARK", "--set-mark", "7"])
        g.run(["nft", "add table ip other; add chain ip other c { type filter hook forward priority 5; }; "
                      "add rule ip other c ip saddr 192.0.2.0/24 counter accept"])
        g.run(["ip", "-6", "rule", "add", "fwmark", "7", "lookup", "77", "priority", "100"])
        g.run(["ip", "-6", "route", "add", "2001:db8:5::/48", "dev", "uplink", "table", "77"])

        def foreign() -> tuple[str, ...]:
            save = g.run(["ip6tables-save"]).stdout
            return (
                "\n".join(l for l in save.splitlines() if "zonectl" not in l.lower() and not l.startswith(("#", ":"))),
                g.run(["nft", "list", "table", "ip", "other"]).stdout,
                "\n".join(l for l in g.run(["ip", "-6", "rule"]).stdout.splitlines() if "proto 90" not in l),
                g.run(["ip", "-6", "route", "show", "table", "77"]).stdout,
            )

        before = foreign()
        reg = registry()
        gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB.replace("8080", "8081"), reg))  # a real change
        assert foreign() == before
        gw.close(cleanup=True)  # and removing all of zonectl's state
        after = foreign()
        assert [l for l in before[0].splitlines()] == [l for l in after[0].splitlines()]
        assert before[1:] == after[1:]
        assert "ZONECTL" not in g.run(["ip6tables-save"]).stdout
        assert "zonectl" not in g.run(["nft", "list", "tables"]).stdout


@BACKENDS
def test_static_map_lets_ipv4_clients_reach_a_service(backend: str) -> None:
    """Two published pods: one of a zone on the shared pool, one of a zone with a pool of its own (whose
    NAT64 traffic is marked to its own Tayga): both reachable from IPv4, both answer through the shared
    Tayga that holds the maps, and the second still opens its own connections from its zone's address."""
    svc, web = "fd00:10:244:2:2000::5", "fd00:10:244:2:2100::5"
    maps = [{"ipv4": "198.51.100.80", "ipv6": svc}, {"ipv4": "198.51.100.81", "ipv6": web}]
    with running({"dmz": 0x2000, "web": 0x2100}, gateway={"staticMaps": maps, "filter": backend}) as (bed, gw):
        bed.start_server("dmz")
        bed.start_server("web")
        for v4 in ("198.51.100.80", "198.51.100.81"):  # upstream routing
            bed.internet.run(["ip", "route", "add", f"{v4}/32", "via", str(GATEWAY_V4)])
        # the service sees the IPv4 client embedded in the NAT64 prefix (198.51.100.254 = c633:64fe) ...
        assert bed.probe(None, "tcp", "198.51.100.80") == "fd64:ff9b::c633:64fe"
        assert bed.probe(None, "udp", "198.51.100.80") == "fd64:ff9b::c633:64fe"
        assert bed.probe(None, "tcp", "198.51.100.81") == "fd64:ff9b::c633:64fe"
        # ... although zone dmz may not open connections to that client: only the replies are let through
        assert bed.probe("dmz", "tcp", "fd64:ff9b::c633:64fe", port=9, timeout=0.5) is None
        # the published web pod's own connections leave by its zone's Tayga, from its zone's address
        assert bed.probe("web", "tcp", TARGET) == "198.51.100.21"
        assert gw.filter.counters()  # the filter is on the path
        if backend == "ip6tables":
            save = bed.gateway.run(["ip6tables-save", "-c", "-t", "filter"]).stdout
            replies = [l for l in save.splitlines() if "ingress-map replies" in l]
            assert len(replies) == 2 and not replies[0].startswith("[0:0]")
        else:
            listing = bed.gateway.run(["nft", "list", "table", "ip6", "zonectl"]).stdout
            replies = [l for l in listing.splitlines() if "ingress-map replies" in l and " accept " in l]
            assert len(replies) == 2 and all("counter packets 0 " not in r for r in replies)


def test_metrics_endpoint_serves_prometheus_text() -> None:
    with running({"dmz": 0x2000, "rogue": 0x4000}) as (bed, gw):
        reach_all(bed, ["dmz", "rogue"], 0.5)
        server = MetricsServer(Listen("127.0.0.1", 0), gw.registry, {"/healthz": gw.healthy}).start()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
                body = resp.read().decode()
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as resp:
                assert resp.status == 200
        finally:
            server.close()
        values = samples(body)
        assert values['zonectl_gateway_packets_total{zone="dmz",action="allow"}'] >= 3
        assert values['zonectl_gateway_packets_total{zone="-",action="deny"}'] >= 3
        assert values['zonectl_gateway_bytes_total{zone="dmz",action="allow"}'] > 100
        assert values['zonectl_tayga_up{instance="shared"}'] == 1
        assert values['zonectl_gateway_packets_total{zone="db",action="allow"}'] == 0
