"""The interconnect-mode node agent (``zonectl ovn run --inputs``) against two real NBs, one per "node".

Each sandbox stands for one node's NB as OVN-K interconnect mode has it: the node's own switch (with
``other_config:ipv6_prefix``, router and management ports), a transit switch, and an OVN-K ACL. Each
node gets its own agent process (the venv's zonectl, ended by its pid); both read one published
document, as the DaemonSet's pods read one ConfigMap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


from promtext import samples

from zonectl.core.rules import RuleSet
from zonectl.core import published
from zonectl.operator.publish import FilePublisher
from zonectl.harness.sandbox import OvnSandbox
from zonectl.procs import wait_until

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "config.yaml"
OWNED = "external_ids:k8s.ovn.org/owner-controller=zonectl"
EXEMPTIONS_PER_SWITCH = 3  # from-router, to-router, from-node (management port)


def build_node(sb: OvnSandbox, index: int) -> None:
    """One node's NB in interconnect mode: its switch, OVN-K's transit switch, one OVN-K ACL."""
    sw, rtr, mgmt = f"node{index}", f"stor-node{index}", f"k8s-node{index}"
    sb.nbctl("ls-add", sw, "--", "set", "Logical_Switch", sw, f"other_config:ipv6_prefix=fd00:10:244:{index}::",
             "--", "lsp-add", sw, rtr, "--", "lsp-set-type", rtr, "router", "--", "lsp-set-addresses", rtr, "router",
             "--", "lsp-add", sw, mgmt, "--", "lsp-set-addresses", mgmt, f"0a:58:0a:00:00:0{index} fd00:10:244:{index}::2",
             "--", "ls-add", "transit_switch", "--", "set", "Logical_Switch", "transit_switch",
             "other_config:interconn-ts=transit_switch")
    sb.nbctl("--id=@a", "create", "ACL", "direction=to-lport", "priority=1001", "action=allow-related",
             f'match="ip6.src==fd00:10:244:{index}::2"',
             "external_ids:k8s.ovn.org/owner-controller=default-network-controller", "--",
             "add", "Logical_Switch", sw, "acls", "@a")


def owned_rows(sb: OvnSandbox) -> dict[str, dict]:
    """zonectl's ACL rows by identity: rule id, or exempt:<kind> (the switch name differs per node)."""
    data = json.loads(sb.nbctl("--format=json", "--columns=_uuid,direction,priority,action,match,external_ids",
                               "find", "ACL", OWNED))
    out: dict[str, dict] = {}
    for uuid, direction, priority, action, match, ids in data["data"]:
        ext = dict(ids[1])
        key = ext.get("zonectl.io/rule") or f"exempt:{ext.get('zonectl.io/exempt')}"
        assert key not in out, f"duplicate row {key}"
        out[key] = {"uuid": uuid[1], "direction": direction, "priority": priority, "action": action, "match": match,
                    "policy": ext.get("zonectl.io/policy")}
    return out


def same_rules(rows: dict[str, dict]) -> dict[str, tuple]:
    """What must be identical on every node: the rule rows, without their uuids."""
    return {k: (v["direction"], v["priority"], v["action"], v["match"], v["policy"])
            for k, v in rows.items() if not k.startswith("exempt:")}


def foreign(sb: OvnSandbox) -> str:
    return sb.nbctl("--bare", "--columns=_uuid,match,external_ids", "find", "ACL",
                    "external_ids:k8s.ovn.org/owner-controller=default-network-controller")


def wait_for(pred, what: str, timeout: float = 15.0) -> None:
    wait_until(pred, timeout, what, interval=0.1)


@contextlib.contextmanager
def agent(nb_remote: str, inputs: Path, log: Path, *extra: str) -> Iterator[subprocess.Popen]:
    """``zonectl ovn run --inputs`` as its own process; SIGTERM by pid at the end (it must exit 0)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zonectl", "ovn", "run", "--config", str(CONFIG), "--nb", nb_remote,
             "--inputs", str(inputs), "--poll", "0.2", "--interval", "600", "--timeout", "5", *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    assert proc.returncode == 0, log.read_text()[-2000:]


def logged(log: Path, text: str, times: int = 1) -> bool:
    return log.read_text().count(text) >= times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def publish(path: Path, rules, registry, *, complete: bool = True, keep=()) -> None:
    doc = published.document(rules, registry, complete=complete, keep=keep)
    FilePublisher(path).publish(published.render(doc))


def test_two_nodes_converge_follow_edits_refuse_bad_inputs_and_repair_drift(
        ovn_nb: OvnSandbox, tmp_path: Path, example_zones, example_config, example_policy_bodies) -> None:
    from zonectl.core.rules import compile_objects

    rules: RuleSet = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    inputs = tmp_path / "inputs" / "gateway.json"
    publish(inputs, rules, example_zones)
    node1 = ovn_nb
    build_node(node1, 1)
    node2 = OvnSandbox(state_dir=tmp_path / "node2")
    logs = [tmp_path / "agent1.log", tmp_path / "agent2.log"]
    port = free_port()
    try:
        with agent(node1.nb_remote, inputs, logs[0], "--metrics-listen", f"127.0.0.1:{port}"), \
                agent(f"unix:{tmp_path / 'node2' / 'nb.sock'}", inputs, logs[1]):
            # node2's agent starts before its NB exists (an agent pod before ovnkube-node's nb-ovsdb):
            # it retries, then connects.
            wait_for(lambda: logged(logs[1], "NB not reachable yet"), "agent2 to wait for its NB")
            node2.start()
            build_node(node2, 2)
            foreign_before = [foreign(node1), foreign(node2)]

            # 1. both nodes converge to the same rule rows, on their own switch only
            want = len(rules) + EXEMPTIONS_PER_SWITCH
            wait_for(lambda: len(owned_rows(node1)) == want and len(owned_rows(node2)) == want, "both NBs synced")
            rows1, rows2 = owned_rows(node1), owned_rows(node2)
            assert same_rules(rows1) == same_rules(rows2) and set(same_rules(rows1)) == {r.id for r in rules}
            for sb, sw in ((node1, "node1"), (node2, "node2")):
                assert sb.nbctl("--bare", "--columns=acls", "list", "Logical_Switch", "transit_switch").strip() == ""
                attached = set(sb.nbctl("--bare", "--columns=acls", "list", "Logical_Switch", sw).split())
                assert {r["uuid"] for r in owned_rows(sb).values()} <= attached

            # 2. an edited document re-syncs: web's rules go, db's are kept as they are (keepPolicies)
            kept = {k: v for k, v in rows1.items() if v["policy"] == "zonectl-system/db"}
            v2 = [r for r in rules if r.policy not in ("zonectl-system/web", "zonectl-system/db")]
            publish(inputs, v2, example_zones, keep=["zonectl-system/db"])
            want_ids = {r.id for r in v2} | set(kept)
            wait_for(lambda: all(set(same_rules(owned_rows(sb))) == want_ids for sb in (node1, node2)),
                     "both NBs to follow the edited document")
            assert same_rules(owned_rows(node1)) == same_rules(owned_rows(node2))
            assert {k: v for k, v in owned_rows(node1).items() if k in kept} == kept  # untouched, same uuids
            good = [owned_rows(node1), owned_rows(node2)]

            # 3. documents that are broken or incomplete are refused; the rows stay exactly as they are
            inputs.write_text('{"apiVersion": "zonectl.io/v1alpha1", "kind": "GatewayInp')
            wait_for(lambda: all(logged(log, "inputs refused") for log in logs), "both agents to refuse it")
            publish(inputs, rules, example_zones, complete=False)  # what the manifests ship / central mode
            wait_for(lambda: all(logged(log, "no `ovn` part") for log in logs), "both agents to refuse it")
            time.sleep(0.5)  # a round that would wrongly sync has had its chance
            assert [owned_rows(node1), owned_rows(node2)] == good

            # 4. drift: a row deleted behind zonectl's back comes back (NB change seen, not the period)
            victim = next(k for k, v in good[0].items() if v["policy"] == "zonectl-system/dmz")
            node1.nbctl("remove", "Logical_Switch", "node1", "acls", good[0][victim]["uuid"])
            wait_for(lambda: victim in owned_rows(node1) and owned_rows(node1)[victim]["uuid"] != good[0][victim]["uuid"],
                     "the deleted row to be recreated")
            assert same_rules(owned_rows(node1)) == same_rules(good[0])  # from the last good document
            wait_for(lambda: logged(logs[0], "drift repaired"), "the repair to be logged")
            assert owned_rows(node2) == good[1]
            status, metrics = http_get(port, "/metrics")
            assert status == 200 and http_get(port, "/healthz") == (200, "ok\n")
            values = samples(metrics)
            for name, value in (('zonectl_ovn_agent_inputs_loads_total{result="refused"}', 2),
                                ("zonectl_ovn_agent_inputs_ok", 0), ("zonectl_ovn_agent_in_sync", 1),
                                ("zonectl_ovn_agent_rules", len(want_ids) - len(kept)),
                                ('zonectl_ovn_agent_syncs_total{result="error"}', 0)):
                assert values[name] == value, (name, metrics)

            # 5. a good document again is taken at once
            publish(inputs, rules, example_zones)
            wait_for(lambda: all(set(same_rules(owned_rows(sb))) == {r.id for r in rules} for sb in (node1, node2)),
                     "both NBs back on the full rule set")
            assert [foreign(node1), foreign(node2)] == foreign_before  # OVN-K's rows never touched
    finally:
        node2.stop()
