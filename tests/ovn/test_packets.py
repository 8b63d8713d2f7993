"""Real packets: pods in network namespaces on two node switches behind ovn_cluster_router, one chassis
(ovs-vswitchd, userspace datapath), zonectl's ACLs synced from the example policies."""

from __future__ import annotations

import pytest

from zonectl.core.rules import compile_objects
from zonectl.ovn.connection import connect
from zonectl.ovn.sync import SyncSettings, sync
from zonectl.harness.ovnk_cluster import Cluster


@pytest.fixture
def packet_lab(ovn_chassis, example_config, example_zones, example_policy_bodies):
    cluster = Cluster(ovn_chassis.nbctl, example_config.layout, node_count=2).build(gateways=False)
    specs = {"dmz": cluster.pod(1, 0x2000, 5, "dmz"), "web": cluster.pod(2, 0x2100, 6, "web"),
             "db": cluster.pod(2, 0x3000, 7, "db")}
    pods = {name: ovn_chassis.add_pod(p.node.switch, p.lport, p.mac, str(p.ip), gateway=str(p.node.router_ip.ip))
            for name, p in specs.items()}
    with connect(ovn_chassis.nb_remote, timeout=5) as nb:
        settings = SyncSettings.build({}, example_config.layout.cluster, nb.has_tier)
        rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
        yield ovn_chassis, nb, settings, rules, pods


def test_zone_policies_with_real_tcp_and_icmp(packet_lab) -> None:
    sb, nb, settings, rules, pods = packet_lab
    pods["web"].tcp_listen(8080)
    pods["db"].tcp_listen(5432)
    pods["dmz"].tcp_listen(8080)
    before = sb.flow_count()
    # Without zonectl everything flows, across nodes too.
    assert pods["web"].tcp_connect(pods["dmz"].ip, 8080)
    assert pods["dmz"].tcp_connect(pods["db"].ip, 5432)
    assert sync(nb, rules, settings).applied
    sb.wait_hv()
    after = sb.flow_count()
    assert pods["dmz"].tcp_connect(pods["web"].ip, 8080), "dmz -> web:8080 is allowed (other node)"
    assert pods["web"].tcp_connect(pods["db"].ip, 5432), "web -> db:5432 is allowed (same node)"
    assert not pods["web"].tcp_connect(pods["dmz"].ip, 8080), "web egress denies dmz"
    assert not pods["dmz"].tcp_connect(pods["db"].ip, 5432), "dmz may never reach db"
    assert not pods["db"].ping(pods["web"].ip), "db egress default deny"
    assert not pods["web"].ping(pods["dmz"].ip), "dmz lets pings in, web egress does not let them out"
    print(f"\nflows on the chassis: {before} before zonectl, {after} after ({after - before} added, "
          f"{len(rules)} rules, 2 node switches)")
    # Removing everything restores the open network.
    sync(nb, [], settings.allowing(empty=True))
    sb.wait_hv()
    assert pods["web"].tcp_connect(pods["dmz"].ip, 8080)
