"""Issue 9, class 1 (enforcement removed by a config that matches nothing) and living beside OVN-K (issue 13,
item 4), against a real NB shaped like OVN-K's, through every writer: the CLI, the controller's backend and
the node agent (its real drift loop).

Each refusal is checked to write nothing (the whole NB byte-identical, ``nb_dump``); OVN-K's rows are
checked byte-identical (``foreign_snapshot``: every row zonectl does not own, switch rows included but for
their references to zonectl's ACLs) before and after every operation, the refused ones included.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace
from ipaddress import IPv6Network
from pathlib import Path

import pytest
import yaml

from test_sync import Ext, delivers, tcp
from zonectl.cli import main
from zonectl.core import published
from zonectl.harness.ovnk_cluster import Cluster, Pod, foreign_snapshot, nb_dump
from zonectl.operator.backend import OvnBackend
from zonectl.operator.publish import FilePublisher
from zonectl.ovn.agent import Agent, InputsFile
from zonectl.ovn.config import parse_ovn
from zonectl.ovn.connection import NbSettings, connect
from zonectl.ovn.guards import SelectionError
from zonectl.ovn.sync import OutcomeUnknown, SyncSettings, remove_policy, sync
from zonectl.procs import wait_until

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
OWNED = "external_ids:k8s.ovn.org/owner-controller=zonectl"


def owned(sb) -> set[str]:
    return set(sb.nbctl("--bare", "--columns=_uuid", "find", "ACL", OWNED).split())


def acls_of(sb, switch: str) -> set[str]:
    return set(sb.nbctl("--bare", "--columns=acls", "list", "Logical_Switch", switch).split())


def config_file(tmp_path: Path, **ovn) -> Path:
    doc = yaml.safe_load((EX / "config.yaml").read_text())
    layout = ovn.pop("layout", None)
    if layout:
        doc["layout"].update(layout)
    if ovn:
        doc["ovn"] = ovn
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cli(lab, config: Path, *extra: str, policies: bool = True) -> int:
    files = ["--zones", str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml")] if policies else []
    try:
        return main(["ovn", "sync", "--nb", lab.sb.nb_remote, "--config", str(config), *files, *extra])
    except SystemExit as exc:  # argparse refuses a bad option value itself (one line, status 2)
        return int(exc.code or 0)


def switch_writes(sb) -> list[dict]:
    """Every operation on Logical_Switch in the transactions NB received (its jsonrpc debug log)."""
    ops = []
    for line in sb.path("nb.log").read_text().splitlines():
        if 'method="transact"' not in line:
            continue
        params = json.loads(line.split("params=", 1)[1].rsplit(", id=", 1)[0])
        ops += [op for op in params[1:] if isinstance(op, dict) and op.get("table") == "Logical_Switch"]
    return ops


# ----- selection: OVN-K's other switches, the management port, switch rows --------------------------

def test_only_default_network_node_switches_get_rows_and_switch_rows_are_only_mutated(lab) -> None:
    """UDN, transit, external and layer2 switches get no row even with an ipv6_prefix in the cluster prefix; a pod
    of namespace `k8s-evil` (port k8s-evil_intruder) is not taken for the management port k8s-node1; the only
    writes to switch rows are mutations of their `acls` set (OVN-K replaces other_config/external_ids wholesale,
    and such a write never collides with a mutation)."""
    others = lab.cluster.add_other_switches(tempting=True)
    web = lab.cluster.add_pods([lab.cluster.pod(1, 0x2100, 0x77, "apps_web-new")])[0]  # no NetworkPolicy selects it
    node1 = lab.cluster.nodes[0]
    mgmt = Pod(node1.mgmt_port, node1, 0, node1.mgmt_ip, node1.mgmt_mac)
    lab.sb.appctl("nb", "vlog/set", "jsonrpc:file:dbg")
    before = foreign_snapshot(lab.sb.nbctl)
    report = sync(lab.nb, lab.rules, lab.settings)
    assert report.applied and report.switches == ["node1", "node2"]
    for name in others:
        assert acls_of(lab.sb, name) & owned(lab.sb) == set(), name
    exempt = lab.sb.nbctl("--bare", "--columns=match", "find", "ACL", "external_ids:zonectl.io/exempt=from-node",
                          "external_ids:zonectl.io/switch=node1").strip()
    assert exempt == 'inport == "k8s-node1"'
    lab.sb.wait_sb()
    intruder = next(p for p in lab.cluster.pods if p.name == "k8s-evil_intruder")
    assert not delivers(lab, intruder, web, tcp(9999)), "a pod of namespace k8s-evil bypassed web's ingress rules"
    assert delivers(lab, mgmt, web, tcp(9999)), "the node (kubelet probes) reaches pods, as OVN-K allows it"
    assert delivers(lab, intruder, Ext("2001:db8:1::1"), tcp(80)), "zone 0 to the outside is not zonectl's to judge"
    assert foreign_snapshot(lab.sb.nbctl) == before
    writes = switch_writes(lab.sb)
    assert writes and all(op["op"] == "mutate" and [m[0] for m in op["mutations"]] == ["acls"] for op in writes), writes


def test_cli_refuses_what_matches_nothing_and_writes_nothing(lab, tmp_path: Path, capsys) -> None:
    assert cli(lab, config_file(tmp_path)) == 0
    cases = [
        (config_file(tmp_path, layout={"cluster": "fd00:10:245::/48"}), (), "no node switch is selected"),
        (config_file(tmp_path, switches=["node1", "nodeX"]), (), "names 1 switch(es) this NB does not have: nodeX"),
        (config_file(tmp_path, switches=["node1"]), (), "take zonectl's rows off 1 of the 2 node switches"),
        (config_file(tmp_path, switches=["transit_switch"]), (), "OVN-K's interconnect transit switch"),
        (config_file(tmp_path, maxSwitchDrop=0.4, switches=["node1"]), (), "ovn.maxSwitchDrop above 0.50, now 0.4"),
    ]
    lab.cluster.add_other_switches()
    dump = nb_dump(lab.sb)
    for config, extra, message in cases:
        assert cli(lab, config, *extra) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert nb_dump(lab.sb) == dump, message
    # the removal of every row needs its flag: without -f it is "nothing to sync", with --allow-empty it happens
    assert cli(lab, config_file(tmp_path), policies=False) == 2
    assert "--allow-empty without -f removes every zonectl row" in capsys.readouterr().err
    assert nb_dump(lab.sb) == dump
    # an intended drop is allowed by its flag, or by ovn.maxSwitchDrop
    assert cli(lab, config_file(tmp_path, maxSwitchDrop=0.5, switches=["node1"]), "--mode", "log") == 0
    assert cli(lab, config_file(tmp_path, switches=["node1"]), "--allow-switch-drop") == 0
    assert acls_of(lab.sb, "node2") & owned(lab.sb) == set() and len(acls_of(lab.sb, "node1") & owned(lab.sb)) == 27
    assert cli(lab, config_file(tmp_path), "--allow-empty", policies=False) == 0
    assert owned(lab.sb) == set()


def test_controller_backend_refuses_no_switch_and_the_last_rows_unless_allowed(lab, example_config) -> None:
    """The controller's path (operator/backend.py): a layout of another cluster selects nothing, and removing the
    last policy would delete every row; both are refused (the finalizer stays, kopf retries) until
    ovn.allowEmpty: true."""
    wrong = replace(example_config.layout, cluster=IPv6Network("fd00:10:245::/48"), datacenter=None)
    backend = OvnBackend.connect({"nb": lab.sb.nb_remote, "timeout": 5}, wrong)
    try:
        dump = nb_dump(lab.sb)
        with pytest.raises(SelectionError, match="no node switch is selected.*outside layout.cluster fd00:10:245::/48"):
            backend.sync(list(lab.rules), set())
        assert nb_dump(lab.sb) == dump
    finally:
        backend.close()
    for allow in (False, True):
        backend = OvnBackend.connect({"nb": lab.sb.nb_remote, "timeout": 5, "allowEmpty": allow}, example_config.layout)
        try:
            one = [r for r in lab.rules if r.policy == "zonectl-system/db"]
            assert backend.sync(one, set()).applied or allow
            rows = len(one) + 6  # and the exemptions of two node switches
            if not allow:
                dump = nb_dump(lab.sb)
                with pytest.raises(SelectionError, match=f"delete all {rows} rows zonectl owns"):
                    backend.remove("zonectl-system/db")
                with pytest.raises(SelectionError, match="the rule set is empty"):
                    backend.sync([], set())
                assert nb_dump(lab.sb) == dump
            else:
                assert backend.remove("zonectl-system/db").deleted == rows and owned(lab.sb) == set()
        finally:
            backend.close()


def test_controller_drift_loop_puts_the_rows_back_on_a_recreated_node_switch(lab, example_config) -> None:
    """Central mode: the controller's backend runs the NB drift loop; OVN-K deleting and re-creating node1's switch
    (a new row, no ACL references) gets zonectl's rows back within seconds, not at the next policy resync."""
    backend = OvnBackend.connect({"nb": lab.sb.nb_remote, "timeout": 5}, example_config.layout).watch(600)
    try:
        assert backend.sync(list(lab.rules), set()).applied
        node2 = acls_of(lab.sb, "node2")
        lab.cluster.recreate_switch(1)
        wait_until(lambda: len(acls_of(lab.sb, "node1") & owned(lab.sb)) == len(lab.rules) + 3, 10,
                   "zonectl's rows on the re-created node1")
        assert acls_of(lab.sb, "node2") == node2  # the other node's switch: not written to
    finally:
        backend.close()


def test_doctor_fails_on_zero_node_switches_and_says_why(lab, tmp_path: Path, capsys) -> None:
    config = config_file(tmp_path, layout={"cluster": "fd00:10:245::/48"})
    assert main(["doctor", "--nb", lab.sb.nb_remote, "--config", str(config), "--skip", "gateway,crds", "-o", "json"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["ovn switches"]["status"] == "fail"
    assert "node1: ipv6_prefix fd00:10:244:1:: is outside layout.cluster fd00:10:245::/48" in checks["ovn switches"]["detail"]
    assert "join: OVN-K's join switch" in checks["ovn switches"]["detail"]


# ----- the node agent: its drift loop, a node switch deleted and re-created ---------------------------

def test_agent_waits_for_its_node_switch_follows_a_recreated_one_and_refuses_an_emptying_document(
        ovn_nb, tmp_path: Path, example_config, example_zones, example_policy_bodies) -> None:
    from zonectl.core.rules import compile_objects

    sb = ovn_nb
    rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    inputs = tmp_path / "gateway.json"
    FilePublisher(inputs).publish(published.render(published.document(rules, example_zones, complete=True)))
    sb.nbctl("ls-add", "transit_switch", "--", "set", "Logical_Switch", "transit_switch",
             "other_config:interconn-ts=transit_switch")  # the node's NB before ovnkube-controller made its switch
    want = len(rules) + 3
    with connect(NbSettings(sb.nb_remote, timeout=5)) as nb:
        settings = SyncSettings.from_config(parse_ovn({"mode": "interconnect"}), example_config.layout, nb.has_tier)
        agent = Agent(nb, InputsFile(inputs, example_config.layout), settings, interval=600, poll=0.1, min_gap=0.1)
        stop = threading.Event()
        runner = threading.Thread(target=agent.run, args=(stop,))
        dump = nb_dump(sb)
        runner.start()
        try:
            wait_until(lambda: agent.last_error is not None, 10, "the agent's first round")
            assert "no node switch is selected" in agent.last_error and "transit_switch" in agent.last_error
            assert nb_dump(sb) == dump  # refused: nothing written
            cluster = Cluster(sb.nbctl, example_config.layout, node_count=1).build(gateways=False)
            wait_until(lambda: len(owned(sb)) == want, 10, "the rows once OVN-K created the node switch")
            assert acls_of(sb, "transit_switch") == set()
            old = acls_of(sb, "node1")
            cluster.recreate_switch(1)  # OVN-K deletes and re-creates the switch: the new row references nothing
            wait_until(lambda: len(acls_of(sb, "node1") & owned(sb)) == want, 10, "the rows back on the new switch")
            assert acls_of(sb, "node1") != old
            # a document with no rule and no kept policy would delete every row: refused, the rows stay
            rows = owned(sb)
            FilePublisher(inputs).publish(published.render(published.document([], example_zones, complete=True)))
            wait_until(lambda: agent.stats.loads_refused == 1, 10, "the emptying document to be refused")
            assert owned(sb) == rows and agent.current is not None and len(agent.current.rules) == len(rules)
        finally:
            stop.set()
            runner.join(15)
        allowed = replace(settings, limits=replace(settings.limits, allow_empty=True))  # ovn.allowEmpty: true
        agent = Agent(nb, InputsFile(inputs, example_config.layout), allowed, interval=600)
        assert agent.check_inputs() and agent.sync_once() is not None
        assert owned(sb) == set()


# ----- OVN-K's rows through every operation, the refused and the failed ones too ----------------------

def test_ovnk_rows_identical_through_every_operation(lab, tmp_path: Path, capsys) -> None:
    lab.cluster.add_other_switches()
    before = foreign_snapshot(lab.sb.nbctl)
    base = config_file(tmp_path)
    ops = {
        "sync log": lambda: cli(lab, base, "--mode", "log"),
        "sync": lambda: cli(lab, base),
        "sync again": lambda: cli(lab, base),
        "status": lambda: main(["ovn", "status", "--nb", lab.sb.nb_remote, "--config", str(base), "--zones",
                                str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml")]),
        "snat report": lambda: main(["ovn", "snat", "--nb", lab.sb.nb_remote, "--config", str(base)]),
        "doctor": lambda: main(["doctor", "--nb", lab.sb.nb_remote, "--config", str(base), "--zones",
                                str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml"), "--skip", "gateway,crds"]),
        "refused: another cluster": lambda: cli(lab, config_file(tmp_path, layout={"cluster": "fd00:10:245::/48"})),
        "refused: switch drop": lambda: cli(lab, config_file(tmp_path, switches=["node2"])),
        "refused: unknown switch": lambda: cli(lab, config_file(tmp_path, switches=["node1", "node2", "node3"])),
        "refused: reject": lambda: cli(lab, config_file(tmp_path, denyAction="reject")),
        "refused: timeout nan": lambda: cli(lab, base, "--timeout", "nan"),
        "refused: empty": lambda: sync(lab.nb, [], lab.settings),
        "remove one policy": lambda: remove_policy(lab.nb, "zonectl-system/web", lab.settings),
        "controller backend": lambda: _backend_sync(lab),
        "unknown outcome": lambda: _unknown_outcome(lab),
        "sync after it": lambda: cli(lab, base),
        "remove everything": lambda: cli(lab, base, "--allow-empty", policies=False),
    }
    for name, op in ops.items():
        try:
            op()
        except Exception as exc:  # the refused ones raise in-process; what matters is what NB holds after
            assert "refused" in name or "unknown" in name, (name, exc)
        capsys.readouterr()
        assert foreign_snapshot(lab.sb.nbctl) == before, name
    assert owned(lab.sb) == set()


def _backend_sync(lab) -> None:
    from zonectl.core.layout import Layout

    backend = OvnBackend.connect({"nb": lab.sb.nb_remote, "timeout": 5}, Layout(lab.settings.switches.cluster))
    try:
        backend.sync(list(lab.rules), set())
    finally:
        backend.close()


def _unknown_outcome(lab) -> None:
    """A sync whose transaction is sent to a hung NB: unknown outcome; the server commits it when resumed."""
    with connect(NbSettings(lab.sb.nb_remote, timeout=1)) as nb:
        remove_policy(nb, "zonectl-system/dmz", lab.settings)
        pid = int(lab.sb.path("nb.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(OutcomeUnknown):
                sync(nb, lab.rules, lab.settings)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: sync(nb, lab.rules, lab.settings, mode="log").in_sync, 10, "the resumed server's commit")
