"""`zonectl lab` end to end, on real OVN, namespaces, Tayga and ip6tables (root; skipped otherwise).

The lab runs as the user runs it: each sub-command is its own process, tied to the others only by the
state directory. Tampering is done the way an operator (or an attacker) would do it, with ovn-nbctl and
ip6tables, never through zonectl, so detection and repair are proven against the real state.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zonectl.harness.coredns import CoreDnsError, binary as coredns_binary
from zonectl.lab.runner import REQUIRED_TOOLS
from zonectl.lab.state import LabState, alive, teardown

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ovn, pytest.mark.netns]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, OVS, Tayga)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"the lab needs {', '.join(missing)}"
    try:
        coredns_binary()
    except CoreDnsError as exc:
        return f"the lab needs CoreDNS: {exc}"
    return None


def lab(state_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "zonectl.lab.cli", "lab", "--state-dir", str(state_dir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def root_links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def recorded_pids(state_dir: Path) -> set[int]:
    """Every pid the lab's files name: the ledger's processes and the OVN sandbox's pidfiles."""
    pids = {p.pid for p in (LabState.load(state_dir) or LabState(state_dir)).processes}
    for pidfile in list(state_dir.glob("ovn/*.pid")) + list(state_dir.glob("logs/*.pid")):
        text = pidfile.read_text().strip()
        if text.isdigit():
            pids.add(int(text))
    return pids


@pytest.fixture
def state_dir(tmp_path: Path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    d = tmp_path / "lab"
    yield d
    state = LabState.load(d) if d.exists() else None
    if state is not None:  # the test failed before `down`: never leave a lab behind
        teardown(state)


def _tamper(state: LabState) -> None:
    """Delete the owned ACL that lets web reach db (from every switch) and flush the gateway's zone dispatch
    (the filter then fails open: its chain returns, the forward hook's policy accepts)."""
    nb = f"unix:{state.ovn_dir}/nb.sock"
    uuid = subprocess.run(["ovn-nbctl", f"--db={nb}", "--bare", "--columns=_uuid", "find", "ACL",
                           'external_ids:"zonectl.io/rule-name"="to-db"'],
                          capture_output=True, text=True, check=True).stdout.split()
    assert len(uuid) == 1, uuid
    topo = state.topology
    for node in topo["nodes"]:
        subprocess.run(["ovn-nbctl", f"--db={nb}", "remove", "Logical_Switch", node["name"], "acls", uuid[0]],
                       check=True, capture_output=True)
    subprocess.run(["ip", "netns", "exec", topo["gateway"]["netns"], "nft", "flush", "chain", "ip6", "zonectl",
                    "zone-egress"], check=True, capture_output=True)


def test_lab_up_test_tamper_sync_down(state_dir: Path) -> None:
    """The lab without Kubernetes (--no-kube): it applies the policies itself; tampering seen and repaired."""
    started = time.monotonic()
    up = lab(state_dir, "up", "--no-kube")
    assert up.returncode == 0, up.stdout + up.stderr
    state = LabState.load(state_dir)
    assert state is not None and state.phase == "up"

    first = lab(state_dir, "test")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "lab test: PASS" in out
    assert "agree with the policy" in out and "MISMATCHES" not in out
    assert "in sync" in out
    # What the examples say, observed with real packets: dmz reaches web on 8080, web reaches db on
    # 5432, db reaches nothing, web leaves through its own egress address.
    table = out.split("from \\ to", 1)[1].split("\n\n", 1)[0]
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert "8080" in rows["dmz"] and "5432" in rows["web"]
    assert rows["db"].split()[1:] == ["-"] * 8
    assert "web        seen as 198.51.100.21" in out
    assert "REACHABLE ok" in out and "FAILED" not in out  # neighbour discovery through OVN's ACLs
    assert "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in out  # the firewall export
    assert "tayga shared: up" in out and "tayga web: up" in out
    # by name through the DNS64 server: dmz reaches a.example and b.example as it reaches their addresses
    assert table.splitlines()[0].split()[-2:] == ["a.example", "b.example"]
    dmz = re.split(r"\s{2,}", rows["dmz"].strip())
    assert dmz[-2:] == dmz[-4:-2] and dmz[-1] != "-"  # the same services by name as by address
    # inbound: the IPv4 internet reaches the published dmz pod on TCP 80 (and ping), nothing else
    inbound = out.split("== inbound:", 1)[1].split("\n== ", 1)[0]
    assert "198.51.100.80 (dmz-2)" in inbound and "agree with the policy (2 allowed" in inbound
    assert (state_dir / "matrix.html").read_text().count("<svg") == 1
    # the gateway was fed through the controller's published document, as the DaemonSet is
    published = json.loads((state_dir / "gateway" / "gateway.json").read_text())
    assert published["kind"] == "GatewayInputs" and {z["metadata"]["name"] for z in published["zones"]} == {"dmz", "web", "db"}
    assert published["rules"] and all(r["direction"] == "egress" and r["nat64"] for r in published["rules"])
    # `gateway status` and `doctor`, run as `lab up` prints them, see the lab's gateway and OVN as a deployment's
    printed = up.stdout.split("inspect it as a deployment:\n", 1)[1].splitlines()[:2]
    status, doctor = (subprocess.run([sys.executable, "-m", *shlex.split(line.strip())], capture_output=True,
                                     text=True, timeout=60, cwd=REPO) for line in printed)
    assert status.returncode == 0 and "daemon pid" in status.stdout and "last apply #1: ok" in status.stdout, status
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    for check in ("ovn drift: NB matches the policies", "tayga shared: pid", "tayga web: pid", "nat64 route"):
        assert f"[OK  ] {check}" in doctor.stdout, doctor.stdout

    _tamper(state)
    tampered = lab(state_dir, "test")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    out = tampered.stdout
    assert "lab test: FAIL" in out
    assert "OVN NB drift" in out and "create" in out and "tcp.dst == 5432" in out
    assert "nft table ip6 zonectl changed since it was applied" in out
    assert "web -> db tcp/5432: observed blocked; policy allows" in out  # the deleted ACL, seen on the wire
    assert "no-zone -> 198.51.100.10" in out and "observed got through; policy denies" in out  # flushed chain

    repaired = lab(state_dir, "sync")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "1 create" in repaired.stdout and "zone filter (nftables)" in repaired.stdout
    again = lab(state_dir, "sync")
    assert "nothing to do" in again.stdout and "gateway apply: nothing to do" in again.stdout

    final = lab(state_dir, "test")
    assert final.returncode == 0, final.stdout + final.stderr
    assert "lab test: PASS" in final.stdout

    # What the checks used not to see: a stopped (hung) Tayga, a deleted NAT table, a dead DNS64 server.
    gw_state = state_dir / "gateway"
    hung = int((gw_state / "tayga" / "web" / "tayga.pid").read_text().split()[0])
    dns64 = next(p.pid for p in LabState.load(state_dir).processes if p.what == "dns64")
    os.kill(hung, signal.SIGSTOP)
    try:
        subprocess.run(["ip", "netns", "exec", state.topology["gateway"]["netns"], "nft", "delete", "table", "ip",
                        "zonectl-nat"], check=True)
        os.kill(dns64, signal.SIGKILL)
        broken = lab(state_dir, "test")
        out = broken.stdout
        assert broken.returncode == 1 and "lab test: FAIL" in out
        assert "tayga web: does not answer through zt64-2100 (stopped or hung)" in out
        assert "nft table ip zonectl-nat is missing" in out and "dns64 (CoreDNS) is not running" in out
        fixed = lab(state_dir, "sync")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "nftables nat" in fixed.stdout and "dns: started dns64" in fixed.stdout
    finally:
        if alive(hung):
            os.kill(hung, signal.SIGCONT)
    assert not alive(hung) or hung != int((gw_state / "tayga" / "web" / "tayga.pid").read_text().split()[0])
    healed = lab(state_dir, "test")
    assert healed.returncode == 0 and "lab test: PASS" in healed.stdout, healed.stdout + healed.stderr

    # The gateway daemon dies (kill -9): `test --repair` notices, restarts it, and the matrix holds.
    daemon = next(p for p in LabState.load(state_dir).processes if p.program == "zonectl.lab.gwd")
    os.kill(daemon.pid, signal.SIGKILL)
    revived = lab(state_dir, "test", "--repair")
    assert revived.returncode == 0, revived.stdout + revived.stderr
    assert "the gateway daemon is not running" in revived.stdout and "restarting it" in revived.stdout
    assert "lab test: PASS" in revived.stdout and "tayga web: up" in revived.stdout
    state = LabState.load(state_dir)

    names = set(state.netns) | {(state_dir / "ovn" / "netns").read_text().split()[0]}
    pids = recorded_pids(state_dir)
    assert names <= netns_names() and len(pids) >= 10
    down = lab(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not names & netns_names()
    assert f"zl{state.lab_id}" not in root_links()
    assert not [p for p in pids if alive(p)]
    assert not state_dir.exists()
    assert time.monotonic() - started < 180


def _ready_rows(test_out: str) -> list[str]:
    """The object rows of the `kubectl get securityzones,securityzonepolicies -A` section of `lab test`."""
    section = test_out.split("== kubernetes: kubectl get securityzones,securityzonepolicies -A\n", 1)[1]
    return [line for line in section.split("\n\n==", 1)[0].splitlines() if "zonectl.io/" in line]


def _nb_policies(state_dir: Path) -> set[str]:
    nb = f"unix:{state_dir / 'ovn' / 'nb.sock'}"
    out = subprocess.run(["ovn-nbctl", f"--db={nb}", "--bare", "--columns=external_ids", "list", "ACL"],
                         capture_output=True, text=True, check=True).stdout
    return set(re.findall(r'"?zonectl\.io/policy"?="?([\w./-]+)"?', out))


def test_lab_with_kubernetes(state_dir: Path) -> None:
    """The user's path: kubectl apply -> the zonectl controller -> OVN ACLs and the published gateway document
    -> packets; a kubectl delete goes the same way; `down` removes all of it, even after a kill -9."""
    up = lab(state_dir, "up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "zones and policies applied with kubectl, all Ready" in up.stdout
    info = json.loads((state_dir / "kube" / "kube.json").read_text())
    kubectl = [info["kubectl"], "--kubeconfig", info["kubeconfig"]]
    assert f"{info['kubectl']} --kubeconfig {info['kubeconfig']} get securityzones,securityzonepolicies -A" in up.stdout

    first = lab(state_dir, "test")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "lab test: PASS" in out and "agree with the policy" in out and "in sync" in out
    rows = _ready_rows(out)
    assert len(rows) == 8 and all(" True " in row for row in rows), rows  # 3 zones, 3 + the lab's 2 policies, Ready
    # the ACLs are the controller's: written for the objects as stored (their generation), which the lab never wrote
    lab_own = {"zonectl-lab/lab-dns", "zonectl-lab/lab-published"}
    assert _nb_policies(state_dir) == {"zonectl-system/dmz", "zonectl-system/web", "zonectl-system/db"} | lab_own
    cm = subprocess.run([*kubectl, "get", "configmap", "zonectl-gateway-rules", "-n", "zonectl-system", "-o",
                         "jsonpath={.data.gateway\\.json}"], capture_output=True, text=True, check=True).stdout
    assert cm and (state_dir / "gateway" / "gateway.json").read_text() == cm  # the gateway reads the controller's document

    # kubectl delete: the controller removes the policy's rows (finalizer) and republishes; the gateway follows
    seq = json.loads((state_dir / "gateway" / "last-apply.json").read_text())["seq"]
    subprocess.run([*kubectl, "delete", "securityzonepolicy", "db", "-n", "zonectl-system"], check=True, timeout=60)
    assert _nb_policies(state_dir) == {"zonectl-system/dmz", "zonectl-system/web"} | lab_own
    deadline = time.monotonic() + 30
    while json.loads((state_dir / "gateway" / "last-apply.json").read_text())["seq"] == seq:
        assert time.monotonic() < deadline, "the gateway did not re-apply the republished document"
        time.sleep(0.2)
    after = lab(state_dir, "test")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "lab test: PASS" in after.stdout and "in sync" in after.stdout and len(_ready_rows(after.stdout)) == 7
    table = after.stdout.split("from \\ to", 1)[1].split("\n\n", 1)[0]
    assert {line.split()[0]: line for line in table.splitlines()[2:]}["db"].split()[1:] != ["-"] * 8  # db is open now

    # the control plane's daemon killed: `down` still ends what it started (recorded in kube.json)
    state = LabState.load(state_dir)
    assert state is not None and state.kube
    daemon = next(p for p in state.processes if p.program == "zonectl.lab.kube")
    os.kill(daemon.pid, signal.SIGKILL)
    pids = recorded_pids(state_dir) | {p["pid"] for p in info["processes"]}
    names = set(state.netns)
    down = lab(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "(etcd)" in down.stdout and "(kube-apiserver)" in down.stdout
    assert not [p for p in pids if alive(p)]
    assert not names & netns_names() and info["link"] not in root_links()
    assert not state_dir.exists() and not [d for d in info["dirs"] if Path(d).exists()]


def test_up_after_a_crash_cleans_up_first(state_dir: Path) -> None:
    """kill -9 `lab up` half-way: the next `up` removes the leftovers, then `down` leaves nothing."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "zonectl.lab.cli", "lab", "--state-dir", str(state_dir), "up",
                             "--no-kube"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    crashed: LabState | None = None
    while time.monotonic() < deadline:
        try:
            crashed = LabState.load(state_dir)
        except Exception:  # caught mid-write: try again
            crashed = None
        if crashed is not None and len(crashed.netns) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    crashed = LabState.load(state_dir)
    assert crashed is not None and crashed.phase == "building" and crashed.netns
    leftovers = set(crashed.netns) & netns_names()
    assert leftovers  # the crash really left namespaces behind

    up = lab(state_dir, "up", "--no-kube")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "cleaning up the previous lab" in up.stdout
    assert not leftovers & netns_names()  # the crashed run's namespaces are gone (new lab, new names)
    state = LabState.load(state_dir)
    assert state is not None and state.phase == "up" and state.lab_id != crashed.lab_id
    down = lab(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not set(state.netns) & netns_names() and not state_dir.exists()


def test_bad_input_is_refused_before_anything_is_made(state_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "policies.yaml"
    bad.write_text(json.dumps({"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
                               "metadata": {"name": "p"}, "spec": {"zones": ["nope"], "egress": [{"action": "Allow"}]}}))
    proc = lab(state_dir, "up", "--policies", str(bad))
    assert proc.returncode == 2
    assert "unknown zone 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert not state_dir.exists()  # refused before the state directory (or anything else) was made


def test_commands_without_a_lab_say_so(state_dir: Path) -> None:
    for cmd in ("test", "sync", "down"):
        proc = lab(state_dir, cmd)
        assert proc.returncode == 2
        assert "no lab in" in proc.stderr and "lab up" in proc.stderr
