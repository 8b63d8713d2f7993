"""Fixtures that start real OVN daemons (Debian ovn-central/ovn-host/openvswitch-switch) in a temp dir.

Each sandbox is private: its own ovsdb-servers, ovn-northd and, for ``ovn_chassis``, its own ovs-vswitchd
in its own network namespace plus ovn-controller. Sandboxes never share a name the kernel sees, so tests
in this directory and other people's tests on the same machine run at the same time without a lock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from zonectl.harness.sandbox import OvnSandbox

_NEEDED = ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl", "ovn-sbctl", "ovn-trace")
_CHASSIS_NEEDED = ("ovs-vswitchd", "ovn-controller", "ovs-vsctl", "ovs-ofctl", "ip", "ethtool")


def _require(binaries: tuple[str, ...]) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"OVN test needs {', '.join(missing)} (apt-get install ovn-central ovn-host openvswitch-switch)")
    if os.geteuid() != 0:
        pytest.skip("OVN chassis tests need root (network namespaces)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ovn)


@pytest.fixture
def ovn_nb(tmp_path: Path) -> Iterator[OvnSandbox]:
    """NB + SB ovsdb-server (unix socket and a tcp listener on 127.0.0.1) and ovn-northd; no chassis."""
    _require(_NEEDED)
    with OvnSandbox(state_dir=tmp_path / "ovn", tcp=True) as sb:
        yield sb


@pytest.fixture
def ovn_chassis(tmp_path: Path) -> Iterator[OvnSandbox]:
    """``ovn_nb`` plus one chassis: ovs-vswitchd (userspace netdev datapath, own netns) and ovn-controller."""
    _require(_NEEDED + _CHASSIS_NEEDED)
    with OvnSandbox(state_dir=tmp_path / "ovn", tcp=True, chassis=True) as sb:
        yield sb


# ----- an OVN-K-shaped cluster with the example zones ---------------------------------------------

from dataclasses import dataclass  # noqa: E402

from zonectl.core.rules import RuleSet, compile_objects  # noqa: E402
from zonectl.ovn.connection import NbClient, connect  # noqa: E402
from zonectl.ovn.sync import SyncSettings  # noqa: E402
from zonectl.harness.ovnk_cluster import Cluster, Pod  # noqa: E402

ZONE_IDS = {"dmz": 0x2000, "web": 0x2100, "db": 0x3000, "none": 0}


@dataclass
class Lab:
    """NB sandbox + OVN-K-like cluster (2 nodes) + pods of each example zone + a zonectl NB client."""

    sb: OvnSandbox
    cluster: Cluster
    nb: NbClient
    settings: SyncSettings
    rules: RuleSet
    pods: dict[str, Pod]

    def compile(self, bodies: list[dict], zones, nat64) -> RuleSet:
        return compile_objects(bodies, zones, nat64)


@pytest.fixture
def lab(ovn_nb: OvnSandbox, example_config, example_zones, example_policy_bodies) -> Iterator[Lab]:
    cluster = Cluster(ovn_nb.nbctl, example_config.layout, node_count=2).build()
    pods = {
        "dmz1": cluster.pod(1, ZONE_IDS["dmz"], 5, "dmz1"),
        "web1": cluster.pod(1, ZONE_IDS["web"], 6, "web1"),
        "none1": cluster.pod(1, 0, 7, "none1"),
        "web2": cluster.pod(2, ZONE_IDS["web"], 8, "web2"),
        "db2": cluster.pod(2, ZONE_IDS["db"], 9, "db2"),
    }
    cluster.add_pods(pods.values(), per_pod_snat=True)
    cluster.add_ovnk_rows()
    nb = connect(ovn_nb.nb_remote, timeout=5)
    try:
        settings = SyncSettings.build({}, example_config.layout.cluster, nb.has_tier)
        rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
        yield Lab(ovn_nb, cluster, nb, settings, rules, pods)
    finally:
        nb.close()
