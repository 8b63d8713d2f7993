"""DNS64 served for real: the Corefile zonectl renders, run by CoreDNS (built from its pinned Go module).

A second CoreDNS (``file`` plugin) in the IPv4 "internet" namespace is the rest of the DNS; the rendered
one runs in the gateway namespace, in front of Tayga, with the production Corefile except for the
cluster zone, which comes from a zone file (the ``kubernetes`` plugin needs an API server). Then:
IPv4-only names get the NAT64 prefix + their IPv4 address, the cluster zone and native zones stay
native, ``translateAll`` does what the docs say, and a pod resolves a name with its own resolver
(getaddrinfo, /etc/resolv.conf) and connects through Tayga to the IPv4 server by that name.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gwlab import CONFIG, running
from zonectl.harness import probe
from zonectl.harness.coredns import CoreDns, CoreDnsError, binary, query, zone_file
from zonectl.harness.gateway_testbed import GATEWAY_V4, SERVER_V4, Testbed
from zonectl.render.coredns import DnsConfig, render_corefile

UPSTREAM = "192.0.2.53"  # the internet's DNS server (on its lo, routed like the IPv4 server)
DNS64 = "fd00:53::53"  # the DNS64 server, on the gateway's lo (pods route everything to the gateway)
POD_WEB = "fd00:10:244:2:2100::5"
SYNTH = str(CONFIG.nat64.embed(SERVER_V4))  # what DNS64 makes of 192.0.2.10: fd64:ff9b::c000:20a


def internet_zones(d: Path) -> str:
    zone_file(d / "db.example", "example", [("a", "A", str(SERVER_V4)), ("dual", "A", str(SERVER_V4)),
                                             ("dual", "AAAA", "2001:db8::10")])
    zone_file(d / "db.corp.example", "corp.example", [("www", "AAAA", "2001:db8::80"), ("www", "A", "192.0.2.80"),
                                                       ("v4only", "A", "192.0.2.81")])
    return (f"example:53 {{\n    bind {UPSTREAM}\n    file {d}/db.example\n}}\n"
            f"corp.example:53 {{\n    bind {UPSTREAM}\n    file {d}/db.corp.example\n}}\n")


def dns64_corefile(d: Path, translate_all: bool = True) -> str:
    zone_file(d / "db.cluster", "cluster.local", [("web.apps.svc", "AAAA", POD_WEB),
                                                  ("legacy.apps.svc", "A", str(SERVER_V4))])
    cfg = DnsConfig(upstreams=(UPSTREAM,), native_zones=("corp.example",), translate_all=translate_all, cache_seconds=0)
    return render_corefile(CONFIG.nat64, cfg, cluster_file=str(d / "db.cluster"))


@pytest.fixture(scope="module")
def dns():
    """The gateway lab with both CoreDNS servers; zone dmz may reach the IPv4 server, zone db may not."""
    try:
        binary()
    except CoreDnsError as exc:  # ZONECTL_REQUIRE_ALL=1 turns this skip into a failure
        pytest.skip(str(exc))
    with running({"dmz": 0x2000, "db": 0x3000}) as (bed, gw):
        bed.internet.run(["ip", "addr", "add", f"{UPSTREAM}/32", "dev", "lo"])
        bed.gateway.run(["ip", "-6", "addr", "add", f"{DNS64}/128", "dev", "lo"])
        d = bed.workdir
        with CoreDns(bed.internet.name, d / "internet", internet_zones(d)).start((UPSTREAM, "a.example", "A")) as up:
            with CoreDns(bed.gateway.name, d / "dns64", dns64_corefile(d)).start((DNS64, "a.example", "AAAA")) as s:
                yield bed, up, s


def ask(bed: Testbed, name: str, rtype: str = "AAAA") -> list[str]:
    reply = query(bed.pods["dmz"].ns.name, DNS64, name, rtype)
    assert reply is not None and reply["rcode"] == 0, (name, reply)
    return sorted(data for t, data in reply["answers"] if t == rtype)


def test_the_served_corefile_is_the_rendered_one_but_for_the_cluster_records(dns) -> None:
    _, _, server = dns
    production = render_corefile(CONFIG.nat64, DnsConfig(upstreams=(UPSTREAM,), native_zones=("corp.example",),
                                                          cache_seconds=0))
    served = server.corefile.splitlines()
    diff = [line for line in served if line not in production.splitlines()]
    assert len(diff) == 1 and diff[0].strip().startswith("file ") and diff[0].strip().endswith(" cluster.local")
    assert "dns64 {" in server.corefile and "translate_all" in server.corefile


def test_ipv4_only_names_get_the_nat64_prefix(dns) -> None:
    bed, _, _ = dns
    assert ask(bed, "a.example") == [SYNTH]
    assert ask(bed, "a.example", "A") == [str(SERVER_V4)]  # A queries pass through unchanged


def test_translate_all_synthesizes_even_where_a_real_aaaa_exists(dns) -> None:
    """Documented: with translateAll (the default) every name outside the cluster and the native zones
    gets the NAT64 address, so pods' traffic always meets the gateway's zone filter."""
    bed, _, _ = dns
    assert ask(bed, "dual.example") == [SYNTH]


def test_without_translate_all_a_real_aaaa_wins(dns) -> None:
    bed, _, server = dns
    other = CoreDns(bed.gateway.name, bed.workdir / "dns64-native", dns64_corefile(bed.workdir, translate_all=False))
    server.stop()
    try:
        with other.start((DNS64, "a.example", "AAAA")):
            assert ask(bed, "dual.example") == ["2001:db8::10"]
            assert ask(bed, "a.example") == [SYNTH]  # no AAAA of its own: still synthesized
    finally:
        server.start((DNS64, "a.example", "AAAA"))


def test_cluster_and_native_zones_are_never_synthesized(dns) -> None:
    bed, _, _ = dns
    assert ask(bed, "web.apps.svc.cluster.local") == [POD_WEB]
    assert ask(bed, "legacy.apps.svc.cluster.local") == []  # an A only in the cluster zone: no NAT64 address
    assert ask(bed, "www.corp.example") == ["2001:db8::80"]
    assert ask(bed, "v4only.corp.example") == []


def test_a_pod_resolves_a_name_and_connects_through_tayga_by_that_name(dns) -> None:
    bed, _, _ = dns
    for label in ("dmz", "db"):
        bed.pods[label].ns.resolv_conf([DNS64])
    # the pod's own resolver (getaddrinfo through /etc/resolv.conf) gets the NAT64 address of a.example;
    # the server behind Tayga sees the gateway's masquerade address
    batch = [{"id": "tcp", "proto": "tcp", "host": "a.example", "port": 8080, "timeout": 2},
             {"id": "udp", "proto": "udp", "host": "a.example", "port": 8053, "timeout": 2},
             {"id": "ping", "proto": "ping", "host": "a.example", "timeout": 2}]
    results = {}
    for label in ("dmz", "db"):
        proc = subprocess.run(["ip", "netns", "exec", bed.pods[label].ns.name, *probe.command("batch")],
                              input=json.dumps(batch), capture_output=True, text=True, timeout=60)
        results[label] = {r["id"]: r for r in json.loads(proc.stdout)}
    dmz, db = results["dmz"], results["db"]
    assert {r["resolved"] for r in dmz.values()} == {SYNTH}
    assert dmz["tcp"]["answer"] == str(GATEWAY_V4) and dmz["udp"]["answer"] == str(GATEWAY_V4)
    assert dmz["ping"]["answer"] == SYNTH
    # zone db resolves the same name (DNS is not the gateway's business) but may not connect
    assert {r["resolved"] for r in db.values()} == {SYNTH} and not any(r["ok"] for r in db.values())


def test_the_rendered_corefile_refuses_a_bad_cluster_file() -> None:
    from zonectl.core.errors import ValidationError

    with pytest.raises(ValidationError, match="cluster zone file"):
        render_corefile(CONFIG.nat64, replace(DnsConfig(), upstreams=(UPSTREAM,)), cluster_file="db\nbad")
