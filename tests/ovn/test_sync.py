"""zonectl's OVN backend against real ovsdb-server + ovn-northd, proven with ovn-trace (--ct new).

The lab (conftest.py) is an OVN-K-shaped NB: two node switches behind ovn_cluster_router, GR_<node>
gateway routers with per-pod SNAT, OVN-K's own port groups, address sets and ACLs, and pods of the
example zones dmz (0x2000), web (0x2100), db (0x3000) plus one pod without a zone.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass

import pytest

from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.ovn.connection import OvnError, connect
from zonectl.ovn.sync import remove_policy, sync
from zonectl.harness.ovnk_cluster import Pod, foreign_snapshot
from zonectl.render.ovn_match import POLICY_KEY

OTHER_CLUSTER_DMZ = "fd00:10:245:1:2000::7"  # a dmz pod of another cluster of the datacenter
LB = "2001:db8:100::10"  # the external load balancers (dmz https-from-lb)
STRANGER = "2001:db8:999::10"
NAT64_OK = "fd64:ff9b::c633:6401"  # 198.51.100.1


@dataclass(frozen=True)
class Ext:
    ip: str


def tcp(port: int) -> str:
    return f"tcp && tcp.src == 40000 && tcp.dst == {port}"


ECHO = "icmp6 && icmp6.type == 128 && icmp6.code == 0"


def trace(lab, src, dst, l4: str) -> str:
    """ovn-trace one new connection; returns the trace text."""
    if isinstance(src, Pod):
        dp, inport, eth_src = src.node.switch, src.lport, src.mac
        if isinstance(dst, Pod) and dst.node == src.node:
            eth_dst = dst.mac
        else:
            eth_dst = src.node.router_mac
    else:  # arriving from outside the node: through the router port of the destination's switch
        assert isinstance(dst, Pod)
        dp, inport, eth_src, eth_dst = dst.node.switch, dst.node.switch_port, dst.node.router_mac, dst.mac
    flow = (f'inport == "{inport}" && eth.src == {eth_src} && eth.dst == {eth_dst} && '
            f"ip6.src == {src.ip} && ip6.dst == {dst.ip} && ip.ttl == 64 && {l4}")
    return lab.sb.trace("--ct", "new", dp, flow)


def delivers(lab, src, dst, l4: str) -> bool:
    out = trace(lab, src, dst, l4)
    target = dst.lport if isinstance(dst, Pod) else src.node.switch_port
    return f'output to "{target}"' in out


def test_reachability_matrix(lab) -> None:
    report = sync(lab.nb, lab.rules, lab.settings)
    assert report.applied and report.count("create") == len(lab.rules) + 6  # + 3 exemptions per node switch
    lab.sb.wait_sb()
    p = lab.pods
    cases = [
        # (src, dst, l4, expected, why)
        (p["dmz1"], p["web1"], tcp(8080), True, "dmz->web 8080, same node"),
        (p["dmz1"], p["web2"], tcp(8080), True, "dmz->web 8080, other node"),
        (p["dmz1"], p["web2"], tcp(8443), False, "dmz egress allows 8080 only"),
        (p["web2"], p["db2"], tcp(5432), True, "web->db 5432, same node"),
        (p["web1"], p["db2"], tcp(5432), True, "web->db 5432, other node"),
        (p["dmz1"], p["db2"], tcp(5432), False, "dmz may not reach db"),
        (p["db2"], p["web1"], tcp(8080), False, "db egress default deny"),
        (p["web1"], p["dmz1"], tcp(443), False, "web egress: db and nat64 only"),
        (p["web1"], p["dmz1"], ECHO, False, "ping to dmz allowed in, but web egress denies"),
        (p["none1"], p["web1"], tcp(8080), False, "no-zone pod is not dmz: web ingress default deny"),
        (p["none1"], p["none1"].__class__("x", p["none1"].node, 0, p["none1"].ip, "0a:00:00:00:00:99"), ECHO, False,
         "unknown MAC (sanity: trace can fail)"),
        (Ext(LB), p["dmz1"], tcp(443), True, "load balancer -> dmz https"),
        (Ext(STRANGER), p["dmz1"], tcp(443), False, "stranger -> dmz https"),
        (Ext(STRANGER), p["dmz1"], ECHO, True, "anyone may ping dmz"),
        (Ext(OTHER_CLUSTER_DMZ), p["web2"], tcp(8080), True, "dmz of another cluster (datacenter scope) -> web"),
        (Ext(OTHER_CLUSTER_DMZ), p["db2"], tcp(5432), False, "never-from-dmz, datacenter scope"),
        (p["dmz1"], Ext(NAT64_OK), tcp(443), True, "dmz -> IPv4 web via NAT64"),
        (p["dmz1"], Ext(NAT64_OK), tcp(22), False, "dmz -> IPv4 ssh"),
        (p["db2"], Ext(NAT64_OK), tcp(443), False, "db has no Internet access"),
    ]
    failures = [why for src, dst, l4, want, why in cases if delivers(lab, src, dst, l4) != want]
    assert not failures, failures
    # and the no-zone pod still talks to no-zone destinations (zonectl leaves zone 0 alone)
    assert delivers(lab, p["none1"], Ext("2001:db8:1::1"), tcp(80))


def test_foreign_rows_identical_through_create_update_delete_resync(lab, example_zones, example_config,
                                                                  example_policy_bodies) -> None:
    before = foreign_snapshot(lab.sb.nbctl)
    assert sync(lab.nb, lab.rules, lab.settings).applied
    assert foreign_snapshot(lab.sb.nbctl) == before
    bodies = copy.deepcopy(example_policy_bodies)
    bodies[1]["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 9090}]  # web: 8080 -> 9090
    bodies[2]["spec"]["priority"] = 50  # db: re-ranks nothing across zones, stays ordered inside db
    changed = compile_objects(bodies, example_zones, example_config.nat64)
    report = sync(lab.nb, changed, lab.settings)
    assert report.count("create") >= 1 and report.count("delete") >= 1
    assert foreign_snapshot(lab.sb.nbctl) == before
    assert remove_policy(lab.nb, "zonectl-system/web", lab.settings).count("delete") > 0
    assert foreign_snapshot(lab.sb.nbctl) == before
    assert sync(lab.nb, changed, lab.settings).applied  # resync brings web back
    assert foreign_snapshot(lab.sb.nbctl) == before
    assert sync(lab.nb, [], lab.settings.allowing(empty=True)).applied  # removing everything leaves OVN-K's rows alone
    assert foreign_snapshot(lab.sb.nbctl) == before
    assert lab.sb.nbctl("--bare", "--columns=_uuid", "find", "ACL",
                        "external_ids:k8s.ovn.org/owner-controller=zonectl") == ""


def _txn_records(lab) -> int:
    out = lab.sb.run(["ovsdb-tool", "show-log", str(lab.sb.path("nb.db"))])
    return sum(1 for line in out.splitlines() if line.startswith("record"))


def test_second_sync_writes_nothing_and_pod_events_write_nothing(lab) -> None:
    sync(lab.nb, lab.rules, lab.settings)
    records = _txn_records(lab)
    again = sync(lab.nb, lab.rules, lab.settings)
    assert again.in_sync and not again.applied
    assert _txn_records(lab) == records
    # 20 new pods: OVN-K writes their ports; zonectl has nothing to write.
    lab.cluster.add_pods([lab.cluster.pod(1 + i % 2, 0x2000, 100 + i) for i in range(20)])
    assert sync(lab.nb, lab.rules, lab.settings).in_sync


def test_new_node_switch_gets_the_rows(lab, example_config) -> None:
    sync(lab.nb, lab.rules, lab.settings)
    lab.sb.nbctl("ls-add", "node3", "--", "set", "Logical_Switch", "node3", "other_config:ipv6_prefix=fd00:10:244:3::")
    lab.sb.nbctl("lsp-add", "node3", "stor-node3", "--", "lsp-set-type", "stor-node3", "router")
    time.sleep(0.2)
    report = sync(lab.nb, lab.rules, lab.settings)
    assert report.count("attach") == len(lab.rules) and report.count("create") == 2  # from/to-router
    acls = lab.sb.nbctl("acl-list", "node3")
    assert acls.count("\n") == len(lab.rules) + 2


def test_remove_policy_removes_exactly_its_rows(lab) -> None:
    sync(lab.nb, lab.rules, lab.settings)

    def owned_by_policy() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for row in lab.nb.api.tables["ACL"].rows.values():
            pol = row.external_ids.get(POLICY_KEY)
            if pol:
                out.setdefault(pol, set()).add(str(row.uuid))
        return out

    before = owned_by_policy()
    remove_policy(lab.nb, "zonectl-system/dmz", lab.settings)
    time.sleep(0.1)
    after = owned_by_policy()
    assert "zonectl-system/dmz" not in after
    assert after == {k: v for k, v in before.items() if k != "zonectl-system/dmz"}  # same rows, same UUIDs


def test_drift_is_logged_then_repaired(lab) -> None:
    sync(lab.nb, lab.rules, lab.settings)
    rule = next(r for r in lab.rules if r.name == "postgres-from-web")
    other = next(r for r in lab.rules if r.name == "to-web")
    nbctl = lab.sb.nbctl
    victim = nbctl("--bare", "--columns=_uuid", "find", "ACL", f"external_ids:zonectl.io/rule={rule.id}").strip()
    edited = nbctl("--bare", "--columns=_uuid", "find", "ACL", f"external_ids:zonectl.io/rule={other.id}").strip()
    for sw in ("node1", "node2"):
        nbctl("remove", "Logical_Switch", sw, "acls", victim)  # deleted behind our back
    nbctl("set", "ACL", edited, "action=drop", "log=true")  # edited behind our back
    dup = nbctl("--id=@d", "create", "ACL", "direction=to-lport", "priority=1500", "action=allow", 'match="ip6"',
                "external_ids:k8s.ovn.org/owner-controller=zonectl", "external_ids:zonectl.io/role=rule",
                f"external_ids:zonectl.io/rule={other.id}", "--", "add", "Logical_Switch", "node1", "acls", "@d")
    assert dup
    time.sleep(0.2)
    logged = sync(lab.nb, lab.rules, lab.settings, mode="log")
    kinds = sorted(c.kind for c in logged.changes)
    assert kinds == ["create", "duplicate", "update"] and not logged.applied
    assert sync(lab.nb, lab.rules, lab.settings, mode="log").changes == logged.changes  # log wrote nothing
    repaired = sync(lab.nb, lab.rules, lab.settings, mode="repair")
    assert repaired.applied
    assert sync(lab.nb, lab.rules, lab.settings).in_sync
    assert sync(lab.nb, lab.rules, lab.settings, mode="off").changes == []


def test_bad_rules_change_nothing(lab, example_zones, example_config, example_policy_bodies) -> None:
    sync(lab.nb, lab.rules, lab.settings)
    records = _txn_records(lab)
    bodies = copy.deepcopy(example_policy_bodies)
    bodies[0]["spec"]["egress"][0]["to"] = [{"zone": "nope"}]
    with pytest.raises(ValidationError, match="unknown zone 'nope'"):
        compile_objects(bodies, example_zones, example_config.nat64)
    tight = type(lab.settings)(type(lab.settings.acl)(priority_min=1992, priority_max=1993), lab.settings.switches)
    with pytest.raises(ValidationError, match="priority band"):
        sync(lab.nb, lab.rules, tight)
    with pytest.raises(ValidationError, match="mode"):
        sync(lab.nb, lab.rules, lab.settings, mode="fix")  # type: ignore[arg-type]
    assert _txn_records(lab) == records


def test_killing_ovsdb_server_during_sync_converges_on_next_sync(lab) -> None:
    sync(lab.nb, lab.rules.rules[:5], lab.settings)
    lab.sb.kill_nb()
    with pytest.raises(OvnError):
        sync(lab.nb, lab.rules, lab.settings)  # server gone: times out, raises, writes nothing
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = sync(lab.nb, lab.rules, lab.settings)
        except OvnError as exc:
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    lab.sb.start_nb()  # back while that sync waits
    worker.join(20)
    assert not worker.is_alive()
    deadline = time.monotonic() + 10
    while not lab.nb.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    final = sync(lab.nb, lab.rules, lab.settings)  # whatever happened above, this one converges
    assert sync(lab.nb, lab.rules, lab.settings).in_sync
    owned = lab.sb.nbctl("--bare", "--columns=_uuid", "find", "ACL",
                         "external_ids:k8s.ovn.org/owner-controller=zonectl").split()
    assert len(owned) == len(lab.rules) + 6, (final.lines(), result)


def test_tcp_and_ssl_remotes(tmp_path, example_config) -> None:
    from zonectl.ovn.connection import NbSettings
    from zonectl.harness.sandbox import OvnSandbox

    with OvnSandbox(state_dir=tmp_path / "ssl", tcp=True, ssl=True) as sb:
        sb.nbctl("ls-add", "x")
        for settings in (NbSettings(sb.nb_tcp_remote, timeout=5), NbSettings(sb.nb_ssl_remote, timeout=5, **sb.ssl_files())):
            with connect(settings) as nb:
                assert [r.name for r in nb.api.tables["Logical_Switch"].rows.values()] == ["x"]
        with pytest.raises(ValidationError, match="needs a private key"):
            connect(NbSettings(sb.nb_ssl_remote))
        with pytest.raises(OvnError, match="Connection refused|cannot"):
            connect(NbSettings("tcp:127.0.0.1:1", timeout=2))
        with pytest.raises(ValidationError, match="is not unix:PATH"):
            connect(NbSettings("http://nb:6641"))
