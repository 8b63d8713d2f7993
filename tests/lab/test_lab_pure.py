"""The lab's pure parts: expectations from compiled rules, the topology plan, the matrix, the ledger.

No namespaces here, so these run everywhere and fast (the probes' loopback test is tests/unit/test_probe.py).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
import xml.etree.ElementTree as ET
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.inputs import load_documents, of_kind
from zonectl.lab.expect import Service, expected, services_of
from zonectl.lab.inputs import LAB_NAMESPACE, Inputs, compile_inputs, lab_policies
from zonectl.lab.matrix import plan_inbound, plan_matrix, observe, render_svg, render_text
from zonectl.lab.state import LabError, LabState, ProcessRecord, cmdline, stop_process
from zonectl.lab.topology import NO_ZONE, Topology, plan
from zonectl.lab.traffic import Observation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def compiled():
    return compile_inputs(Inputs.defaults())


@pytest.fixture(scope="module")
def topo(compiled):
    return plan(compiled.config, compiled.registry, nodes=2, lab_id="t3st")


def addr(topo: Topology, zone: str) -> IPv6Address:
    return topo.pods_of(zone)[0].address


V4 = {"a": "198.51.100.10", "b": "192.0.2.10"}


@pytest.mark.parametrize(
    "src, dst, svc, allowed",
    [
        ("dmz", "web", Service("tcp", 8080), True),  # dmz egress to-web + web ingress from-dmz
        ("dmz", "web", Service("tcp", 8443), False),  # web would accept it, dmz may not send it
        ("web", "db", Service("tcp", 5432), True),
        ("web", "db", Service("udp", 5432), False),
        ("db", "web", Service("tcp", 8080), False),  # db: default egress deny
        (NO_ZONE, "dmz", Service("icmpv6"), True),  # no policy on the source; dmz ingress ping
        (NO_ZONE, "dmz", Service("tcp", 443), False),  # 443 only from the load balancers' CIDR
        (NO_ZONE, NO_ZONE, Service("udp", 9999), True),  # nobody governs either side
        ("dmz", "dmz", Service("icmpv6"), False),  # dmz may not send it, even to itself
        ("dmz", "a", Service("udp", 53), True),
        ("dmz", "b", Service("tcp", 80), True),
        ("web", "a", Service("tcp", 443), True),
        ("web", "b", Service("tcp", 443), False),  # web's NAT64 rule names 198.51.100.0/24 only
        ("web", "a", Service("tcp", 80), False),
        (NO_ZONE, "a", Service("tcp", 80), False),  # OVN lets it go; the gateway fails closed
        ("db", "a", Service("icmpv6"), False),
    ],
)
def test_expectations_follow_the_compiled_rules(compiled, topo, src, dst, svc, allowed):
    nat64 = compiled.config.nat64
    dst_addr = nat64.embed(V4[dst]) if dst in V4 else topo.pods_of(dst)[-1].address
    verdict = expected(compiled.ruleset, nat64, addr(topo, src), dst_addr, svc)
    assert verdict.allowed is allowed, verdict.reason


def test_expectation_names_the_deciding_rule(compiled, topo):
    v = expected(compiled.ruleset, compiled.config.nat64, addr(topo, "db"), addr(topo, "web"), Service("tcp", 8080))
    assert "zonectl-system/db egress default-egress (deny)" in v.reason
    v = expected(compiled.ruleset, compiled.config.nat64, addr(topo, NO_ZONE),
                 compiled.config.nat64.embed("198.51.100.10"), Service("tcp", 80))
    assert "gateway" in v.reason and "fail closed" in v.reason


def test_a_policy_change_changes_the_expectation(compiled, topo):
    """Expectations are computed from the rules, so a new rule flips exactly its cell."""
    docs = of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")
    db = next(d for d in docs if d["metadata"]["name"] == "db")
    db = {**db, "spec": {**db["spec"], "egress": [{"name": "dns", "action": "Allow", "to": [{"nat64": {"any": True}}],
                                                   "ports": [{"protocol": "UDP", "port": 53}]}]}}
    rules = compile_objects([d for d in docs if d is not db and d["metadata"]["name"] != "db"] + [db],
                            compiled.registry, compiled.config.nat64)
    nat64 = compiled.config.nat64
    dst = nat64.embed("192.0.2.10")
    assert expected(rules, nat64, addr(topo, "db"), dst, Service("udp", 53)).allowed
    assert not expected(rules, nat64, addr(topo, "db"), dst, Service("tcp", 53)).allowed
    assert not expected(compiled.ruleset, nat64, addr(topo, "db"), dst, Service("udp", 53)).allowed


def test_services_cover_every_named_port_and_a_control_port(compiled):
    labels = [s.label for s in services_of(compiled.ruleset)]
    for want in ("icmp", "tcp/80", "tcp/443", "tcp/5432", "tcp/8080", "tcp/8443", "tcp/8444", "udp/53"):
        assert want in labels
    controls = [s for s in services_of(compiled.ruleset) if s.port == 9999]
    assert {s.proto for s in controls} == {"tcp", "udp"}


def test_topology_addresses_carry_their_zone_and_node(compiled, topo):
    layout = compiled.config.layout
    names = compiled.registry.names()
    assert {p.zone for p in topo.pods} == {"dmz", "web", "db", NO_ZONE}
    for pod in topo.pods:
        info = layout.explain(pod.address, names)
        node = next(n for n in topo.nodes if n.name == pod.node)
        assert info.node == node.subnet
        assert info.zone_id == pod.zone_id and (pod.zone == NO_ZONE or info.zone_name == pod.zone)
        assert len(pod.host_if) <= 15
    for zone in topo.zones:
        assert len({p.node for p in topo.pods_of(zone)}) == 2  # every zone spans both nodes
    assert len({p.address for p in topo.pods}) == len({p.mac for p in topo.pods}) == len(topo.pods)
    assert Topology.from_dict(topo.as_dict()) == topo


@pytest.mark.parametrize("nodes", [0, 1, 9])
def test_topology_refuses_a_bad_node_count(compiled, nodes):
    with pytest.raises(ValidationError, match="2 to 8 nodes"):
        plan(compiled.config, compiled.registry, nodes=nodes)


def _all_as_expected(matrix):
    return {c.key: Observation(c.expected.allowed, c.answer_want or "x" if c.expected.allowed else None, 1.0,
                               resolved=c.resolved_want) for c in matrix.cells.values()}


def test_matrix_agreement_and_mismatch_text(compiled, topo):
    matrix, probes = plan_matrix(topo, compiled.ruleset, compiled.config.nat64, compiled.services)
    assert len(probes) == len(matrix.cells) == 4 * 8 * len(compiled.services)  # 4 zones, 2 sites by address and name
    good = observe(matrix, _all_as_expected(matrix))
    assert good.passed and "agree with the policy" in render_text(good)
    results = _all_as_expected(matrix)
    results["db>web>tcp/8080"] = Observation(True, "x", 1.0)  # got through against policy
    results["dmz>web>tcp/8080"] = Observation(False, None, 1000.0)  # blocked against policy
    bad = observe(matrix, results)
    text = render_text(bad)
    assert not bad.passed and len(bad.mismatches()) == 2
    assert "+8080!" in text and "-8080!" in text
    assert "db -> web tcp/8080: observed got through; policy denies" in text
    missing = observe(matrix, {})
    assert not missing.passed  # no observation is never agreement
    svg = ET.fromstring(render_svg(bad))
    fills = [r.get("fill") for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
    assert fills.count("#c62828") == 2 + 1  # two red cells plus the legend's swatch


def test_names_resolve_through_dns64_and_the_cell_needs_the_nat64_address(compiled, topo):
    """A pod dials a.example: the cell expects what the address column expects, and the probe must have
    resolved the name to the NAT64 address of the site (through the lab's DNS policy, every zone may ask)."""
    nat64 = compiled.config.nat64
    matrix, probes = plan_matrix(topo, compiled.ruleset, nat64, compiled.services)
    by_name = {p.id: p for p in probes if p.host == "a.example"}
    assert len(by_name) == 4 * len(compiled.services)
    for svc in compiled.services:
        for zone in topo.zones:
            named, direct = matrix.cell(zone, "a.example", svc), matrix.cell(zone, "198.51.100.10", svc)
            assert named.expected.allowed == direct.expected.allowed
            assert named.resolved_want == str(nat64.embed("198.51.100.10"))
    cell = matrix.cell("dmz", "a.example", Service("tcp", 80))
    assert cell.expected.allowed
    right = replace(cell, observed=Observation(True, "198.51.100.1", 1.0, resolved=cell.resolved_want))
    wrong = replace(cell, observed=Observation(True, "198.51.100.1", 1.0, resolved="2001:db8::10"))
    assert right.agrees and not wrong.agrees  # the name reached the site, but not through NAT64: a mismatch


def test_inbound_matrix_follows_the_destination_zones_ingress(compiled, topo):
    nat64 = compiled.config.nat64
    inbound, probes = plan_inbound(topo, compiled.ruleset, nat64, compiled.services)
    assert [c.split()[0] for c in inbound.cols] == ["198.51.100.80", "198.51.100.81", "198.51.100.82"]
    dmz, web, db = inbound.cols
    allowed = {(c.dst, c.service.label) for c in inbound.cells.values() if c.expected.allowed}
    assert allowed == {(dmz, "tcp/80"), (dmz, "icmp")}  # the lab's published rule, and dmz's "ping from any"
    assert all(p.netns == topo.internet.netns for p in probes)
    cell = inbound.cell(inbound.rows[0], dmz, Service("tcp", 80))
    assert cell.answer_want == str(nat64.embed("198.51.100.10"))  # the pod saw the client through NAT64
    assert replace(cell, observed=Observation(True, cell.answer_want, 1.0)).agrees
    assert not replace(cell, observed=Observation(True, "198.51.100.1", 1.0)).agrees


def test_lab_policies_never_decide_a_zone_default(compiled):
    lab = lab_policies([d for d in compiled.policies if d["metadata"]["namespace"] != LAB_NAMESPACE],
                       [z.name for z in compiled.registry])
    assert [p["metadata"]["name"] for p in lab] == ["lab-dns", "lab-published"]
    assert all(p["spec"]["defaultAction"] == {"ingress": "Allow", "egress": "Allow"} for p in lab)
    for zone in ("dmz", "web", "db"):  # each still falls to its own Deny default
        v = expected(compiled.ruleset, compiled.config.nat64, addr_of(compiled, zone), compiled.config.nat64.embed(
            "203.0.113.1"), Service("tcp", 9999))
        assert not v.allowed and "default" in v.reason


def addr_of(compiled, zone):
    return compiled.config.layout.encode("fd00:10:244:1::/64", compiled.registry.get(zone).id, 5)


def test_ledger_round_trip_and_version_check(tmp_path):
    state = LabState(tmp_path, lab_id="ab12", netns=["zlab12-x"], processes=[ProcessRecord(1, "p", "w")])
    state.save()
    loaded = LabState.load(tmp_path)
    assert loaded is not None and loaded.netns == ["zlab12-x"] and loaded.processes[0].program == "p"
    (tmp_path / "lab.json").write_text('{"version": 99}')
    with pytest.raises(LabError, match="ledger version"):
        LabState.load(tmp_path)


def test_stop_process_only_ends_the_program_it_recorded():
    proc = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 5
    while "sleep" not in cmdline(proc.pid) and time.monotonic() < deadline:  # until the exec happened
        time.sleep(0.01)
    try:
        assert not stop_process(ProcessRecord(proc.pid, "not-this-program", "x"))  # pid reused by another program
        assert proc.poll() is None
        assert stop_process(ProcessRecord(proc.pid, "sleep", "x"))
        assert proc.wait(timeout=5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
