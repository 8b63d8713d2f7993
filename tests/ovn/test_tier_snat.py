"""The ACL tier path (OVN >= 23.06 schemas) and SNAT rows that hide zone pods on GR_<node>."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zonectl.ovn.connection import connect
from zonectl.harness.sandbox import NB_SCHEMA, OvnSandbox
from zonectl.ovn.snat import SnatGuard, find_hiding_nats, remove_nats
from zonectl.ovn.sync import SyncSettings, sync
from zonectl.harness.ovnk_cluster import Cluster, foreign_snapshot
from zonectl.procs import wait_until


def tier_schema(tmp_path: Path) -> Path:
    """Debian's 23.03 NB schema plus ACL.tier and the "pass" action, as 23.06+ has them."""
    schema = json.loads(NB_SCHEMA.read_text())
    schema["tables"]["ACL"]["columns"]["tier"] = {"type": {"key": {"type": "integer", "minInteger": 0,
                                                                   "maxInteger": 3}}}
    action = schema["tables"]["ACL"]["columns"]["action"]["type"]["key"]["enum"]
    action[1].append("pass")  # 23.06 added both
    schema["version"] = "7.0.99"
    path = tmp_path / "nb-with-tier.ovsschema"
    path.write_text(json.dumps(schema))
    return path


def owned_tiers(nb) -> set:
    with nb.lock:
        return {getattr(r, "tier", None) for r in nb.api.tables["ACL"].rows.values()
                if r.external_ids.get("k8s.ovn.org/owner-controller") == "zonectl"}


def test_tier_column_is_used_when_the_schema_has_it(tmp_path: Path, example_config, example_zones,
                                                    example_policy_bodies) -> None:
    """Debian's 23.03 has no ACL.tier; give the NB server a schema that has it (as 23.06+ does)."""
    from zonectl.core.rules import compile_objects

    path = tier_schema(tmp_path)
    with OvnSandbox(state_dir=tmp_path / "ovn", nb_schema=path) as sb:
        Cluster(sb.nbctl, example_config.layout, node_count=1).build(gateways=False)
        rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
        with connect(sb.nb_remote, timeout=5) as nb:
            assert nb.has_tier
            settings = SyncSettings.build({"allowAction": "pass"}, example_config.layout.cluster, nb.has_tier)
            assert sync(nb, rules, settings).applied
            assert sync(nb, rules, settings).in_sync
            # ovn-nbctl knows only its compiled-in schema; read the rows through the monitored cache.
            rows = [r for r in nb.api.tables["ACL"].rows.values()
                    if r.external_ids.get("k8s.ovn.org/owner-controller") == "zonectl"]
            assert {r.tier for r in rows} == {1}
            assert {r.action for r in rows} == {"pass", "drop"}  # exemptions pass too: NetworkPolicy still judges


def test_tiers_are_taken_up_after_an_upgrade_reconnect(tmp_path: Path, example_config, example_zones,
                                                       example_policy_bodies) -> None:
    """An OVN upgrade adds ACL tiers while zonectl stays connected: after the IDL reconnects, the next sync
    reads the schema again and writes the tier (it is not kept from the first connect)."""
    from zonectl.core.rules import compile_objects

    rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    with OvnSandbox(state_dir=tmp_path / "ovn") as sb:
        Cluster(sb.nbctl, example_config.layout, node_count=1).build(gateways=False)
        with connect(sb.nb_remote, timeout=5) as nb:
            assert not nb.has_tier
            settings = SyncSettings.build({}, example_config.layout.cluster, nb.has_tier)
            assert sync(nb, rules, settings).applied
            sb.kill_nb()
            sb.run(["ovsdb-tool", "convert", str(sb.path("nb.db")), str(tier_schema(tmp_path))])
            sb.nb_schema = tier_schema(tmp_path)
            sb.start_nb()
            wait_until(lambda: nb.connected and nb.idl._session.get_seqno() != nb._session_seqno, 15,
                       "the IDL to reconnect")
            report = sync(nb, rules, settings)  # the settings were built without tiers
            assert nb.has_tier and nb.schema_version == "7.0.99"
            assert report.applied and report.count("update") == len(rules) + 3  # every row gains its tier
            assert owned_tiers(nb) == {1}
            assert sync(nb, rules, settings).in_sync


def test_pass_needs_tiers(ovn_nb, example_config) -> None:
    from zonectl.core.errors import ValidationError

    with connect(ovn_nb.nb_remote, timeout=5) as nb:
        assert not nb.has_tier
        with pytest.raises(ValidationError, match="needs an NB schema with ACL tiers"):
            SyncSettings.build({"allowAction": "pass"}, example_config.layout.cluster, nb.has_tier)


def test_snat_rows_reported_then_removed_and_kept_removed(lab, example_zones, example_config, caplog) -> None:
    layout = example_config.layout
    # per-pod SNAT for the 5 lab pods (4 zone pods + 1 without a zone), plus one cluster-wide SNAT row
    lab.sb.nbctl("lr-nat-add", "GR_node2", "snat", "2001:db8:ff::2", str(layout.cluster))
    lab.sb.nbctl("lr-nat-add", "GR_node1", "snat", "198.51.100.1", "10.244.0.0/16")  # IPv4: not ours to judge
    time.sleep(0.2)
    with lab.nb.lock:
        found = find_hiding_nats(lab.nb.api.tables, layout, example_zones)
    reasons = {f.logical_ip: f.zones for f in found}
    assert reasons == {"fd00:10:244:1:2000::5": ("dmz",), "fd00:10:244:1:2100::6": ("web",),
                       "fd00:10:244:2:2100::8": ("web",), "fd00:10:244:2:3000::9": ("db",),
                       str(layout.cluster): ("*",)}
    before = foreign_snapshot(lab.sb.nbctl)
    removed = remove_nats(lab.nb, layout, example_zones)
    assert len(removed) == 5
    after = foreign_snapshot(lab.sb.nbctl)
    assert after["NAT"] != before["NAT"] and len(after["NAT"]) == len(before["NAT"]) - 5
    assert {k: v for k, v in after.items() if k not in ("NAT", "Logical_Router")} == \
        {k: v for k, v in before.items() if k not in ("NAT", "Logical_Router")}
    # OVN-K adds a per-pod SNAT row for a new pod: the guard removes it and logs it.
    with SnatGuard(lab.nb, layout, example_zones, interval=5):
        new = lab.cluster.pod(1, 0x2000, 77)
        lab.cluster.add_pods([new], per_pod_snat=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and str(new.ip) in lab.sb.nbctl("lr-nat-list", "GR_node1"):
            time.sleep(0.05)
    assert str(new.ip) not in lab.sb.nbctl("lr-nat-list", "GR_node1")
    assert "fd00:10:244:1:0:0:0:7" not in lab.sb.nbctl("lr-nat-list", "GR_node1")  # no-zone pod: untouched
    assert "fd00:10:244:1::7" in lab.sb.nbctl("lr-nat-list", "GR_node1")
    assert "10.244.0.0/16" in lab.sb.nbctl("lr-nat-list", "GR_node1")
    assert any("removed SNAT row" in r.message and str(new.ip) in r.message for r in caplog.records)
