"""The sandbox itself: real packets through the userspace datapath, an ACL that stops them, ovn-trace,
two chassis sandboxes side by side, and a state dir left by a crashed run cleaned on the next start."""

from __future__ import annotations

from pathlib import Path

import pytest

from zonectl.harness import netns as nslib
from zonectl.harness.sandbox import OvnSandbox, SandboxError
from zonectl.procs import alive as _alive

DMZ_MASK = "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"
A_MAC, A_IP = "0a:00:00:00:00:01", "fd00:10:244:1:2000::5"
B_MAC, B_IP = "0a:00:00:00:00:02", "fd00:10:244:1:3000::6"


def _two_pods(sb: OvnSandbox):
    sb.nbctl("ls-add", "node1")
    return sb.add_pod("node1", "a", A_MAC, A_IP), sb.add_pod("node1", "b", B_MAC, B_IP)


def test_pods_ping_then_acl_drop_stops_them(ovn_chassis: OvnSandbox) -> None:
    a, b = _two_pods(ovn_chassis)
    b.tcp_listen(8080)
    assert a.ping(b.ip, count=3)
    assert a.tcp_connect(b.ip, 8080), "TCP through the userspace datapath (checksum offload must be off)"
    ovn_chassis.nbctl("acl-add", "node1", "from-lport", "1002", f"ip6.src == {DMZ_MASK}", "drop")
    ovn_chassis.wait_hv()
    assert not a.ping(b.ip, count=2)
    assert not a.tcp_connect(b.ip, 8080)
    ovn_chassis.nbctl("acl-del", "node1")
    ovn_chassis.wait_hv()
    assert a.ping(b.ip, count=3)


def test_ovn_trace_sees_the_wildcard_acl(ovn_nb: OvnSandbox) -> None:
    sb = ovn_nb
    sb.nbctl("ls-add", "node1")
    for name, mac, ip in (("a", A_MAC, A_IP), ("b", B_MAC, B_IP)):
        sb.nbctl("lsp-add", "node1", name, "--", "lsp-set-addresses", name, f"{mac} {ip}")
    flow = (f'inport == "a" && eth.src == {A_MAC} && eth.dst == {B_MAC} && ip6.src == {A_IP} && '
            f"ip6.dst == {B_IP} && ip.ttl == 64 && icmp6.type == 128 && icmp6.code == 0")
    sb.wait_sb()
    assert 'output to "b"' in sb.trace("node1", flow)
    sb.nbctl("acl-add", "node1", "from-lport", "1002", f"ip6.src == {DMZ_MASK}", "drop")
    sb.wait_sb()
    out = sb.trace("node1", flow)
    assert DMZ_MASK in out and 'output to "b"' not in out


def test_two_chassis_sandboxes_run_side_by_side(tmp_path: Path) -> None:
    """Same switch, port, MAC and IP names in both: nothing the kernel sees collides."""
    pytest.importorskip("ovsdbapp")
    with OvnSandbox(state_dir=tmp_path / "one", chassis=True) as one, \
            OvnSandbox(state_dir=tmp_path / "two", chassis=True) as two:
        pods = [_two_pods(sb) for sb in (one, two)]
        for a, b in pods:
            assert a.ping(b.ip, count=2)
        two.nbctl("acl-add", "node1", "from-lport", "1002", f"ip6.src == {DMZ_MASK}", "drop")
        two.wait_hv()
        assert pods[0][0].ping(pods[0][1].ip, count=2)
        assert not pods[1][0].ping(pods[1][1].ip, count=1)
        assert one.chassis_ns.name != two.chassis_ns.name


def test_crashed_run_is_cleaned_up(tmp_path: Path) -> None:
    state = tmp_path / "crash"
    first = OvnSandbox(state_dir=state, chassis=True).start()
    pids = {d: first._pid(d) for d in ("nb", "sb", "northd", "ovs", "vswitchd", "controller")}
    ns_name = first.chassis_ns.name
    # Simulate a crash: the Python side is gone, the daemons and the netns stay.
    first.chassis_ns._open = False
    first._own_dir = False
    second = OvnSandbox(state_dir=state, chassis=True)
    try:
        second.start()
        assert all(not _alive(pid) for pid in pids.values() if pid)
        assert ns_name not in nslib.list_netns()
        second.nbctl("ls-add", "again")
    finally:
        second.stop()
    for d in ("nb", "vswitchd", "controller"):
        assert not (state / f"{d}.pid").exists()
    assert second.chassis_ns is None


def test_flow_counts_for_the_benchmark(ovn_chassis: OvnSandbox) -> None:
    """Record the fixed cost: flows with no ACL, with one stateful ACL, then per extra wildcard ACL."""
    _two_pods(ovn_chassis)
    base = ovn_chassis.flow_count()
    ovn_chassis.nbctl("acl-add", "node1", "to-lport", "1002", f"ip6.dst == {DMZ_MASK} && tcp.dst == 1", "allow-related")
    ovn_chassis.wait_hv()
    stateful = ovn_chassis.flow_count()
    ovn_chassis.nbctl("acl-add", "node1", "to-lport", "1003", f"ip6.dst == {DMZ_MASK} && tcp.dst == 2", "allow-related")
    ovn_chassis.wait_hv()
    one_more = ovn_chassis.flow_count()
    print(f"\nflows: base {base}, first stateful ACL {stateful} (+{stateful - base}), next ACL +{one_more - stateful}")
    assert stateful - base > 20  # conntrack machinery
    assert 1 <= one_more - stateful <= 4  # one wildcard rule: a couple of flows


def test_attach_from_a_new_handle(ovn_chassis: OvnSandbox) -> None:
    """``attach`` (what a new process does) reaches the same daemons and chassis, and can add pods, whose
    veth ends live in the chassis and pod namespaces (created there, see ``netns.veth``)."""
    ovn_chassis.nbctl("ls-add", "node1")
    a = ovn_chassis.add_pod("node1", "a", A_MAC, A_IP)
    again = OvnSandbox.attach(ovn_chassis.state_dir)
    assert again.chassis_ns.name == ovn_chassis.chassis_ns.name
    assert again.chassis_name == ovn_chassis.chassis_name
    assert "node1" in again.nbctl("ls-list")
    b = again.add_pod("node1", "b", B_MAC, B_IP)
    try:
        assert a.ping(b.ip, count=3) and b.ping(a.ip, count=3)
        assert A_MAC in a.run(["ip", "link", "show", "eth0"]).stdout
        chassis_links = again.chassis_ns.run(["ip", "-o", "link", "show"]).stdout
        root_links = nslib.run(["ip", "-o", "link", "show"]).stdout
        for pod in (a, b):
            assert f" {pod.ovs_port}@" in chassis_links and f" {pod.ovs_port}@" not in root_links
    finally:
        again.remove_pod(b)
    assert b.ns.name not in nslib.list_netns()


def test_attach_refuses_a_directory_without_a_running_sandbox(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no running OVN sandbox"):
        OvnSandbox.attach(tmp_path)
