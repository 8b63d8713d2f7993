"""`zonectl lab up | test | sync | down`: the orchestration, one function per sub-command.

Each sub-command is a new process; what ties them together is the ledger in the state directory
(``state.py``). ``up`` validates every input before it changes anything, cleans up a previous
(crashed or still running) lab of the same state directory first, and if any step fails it tears
down what it already made, so a failed ``up`` leaves the machine as it found it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..harness.controlplane import Binaries
from ..harness.netns import list_netns
from ..harness.ovnk import CLUSTER_ROUTER
import yaml

from . import build, dns, enforce, kube, report, traffic
from .enforce import Drift
from .inputs import LAB_NAMESPACE, LAB_POLICIES, Compiled, Inputs, compile_inputs
from .matrix import observe, plan_inbound, plan_matrix, render_text
from .state import PACKAGE_ROOT, LabError, LabState, teardown
from .topology import Topology, plan

REQUIRED_TOOLS = ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-controller", "ovs-vswitchd", "ovn-nbctl",
                  "ovn-sbctl", "ovs-vsctl", "tayga", "ip", "ethtool", "ip6tables-restore", "nft")

RETRY_TIMEOUT = 3.0

Say = Callable[[str], None]


def default_state_dir() -> Path:
    """/var/lib/zonectl-lab when /var/lib is writable (root), else /tmp/zonectl-lab."""
    return Path("/var/lib/zonectl-lab") if os.access("/var/lib", os.W_OK) else Path("/tmp/zonectl-lab")


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("zonectl lab needs root (network namespaces, OVS, Tayga); run it with sudo")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing programs: {', '.join(missing)} "
            "(Debian: apt-get install ovn-central ovn-host openvswitch-switch tayga iproute2 ethtool iptables nftables)"
        )


def load_state(state_dir: Path) -> LabState:
    state = LabState.load(state_dir)
    if state is None:
        raise LabError(f"no lab in {state_dir} (run `zonectl lab up --state-dir {state_dir}` first)")
    return state


def _prepare_dir(state_dir: Path, say: Say) -> bool:
    """Clean a previous lab from ``state_dir``; refuse a directory that holds anything else. True if created."""
    previous = LabState.load(state_dir) if state_dir.exists() else None
    if previous is not None:
        say(f"cleaning up the previous lab in {state_dir} (phase {previous.phase})")
        created = previous.created_dir
        teardown(previous)
        if created:
            state_dir.mkdir(parents=True)
        return created
    if state_dir.exists():
        if any(state_dir.iterdir()):
            raise LabError(f"{state_dir} exists and is not a lab state directory; choose an empty or new --state-dir")
        return False
    state_dir.mkdir(parents=True)
    return True


def up(state_dir: Path, inputs: Inputs, *, nodes: int = 2, with_kube: bool = True,
       say: Say = print) -> tuple[LabState, Topology]:
    """Bring the whole lab up; on any failure remove what was made and re-raise.

    ``with_kube``: the policies go the user's way, ``kubectl apply`` -> the zonectl controller -> OVN
    and the published gateway document (lab/kube.py); without, the lab applies them itself."""
    require_root()
    compiled = compile_inputs(inputs)  # bad input: error before anything changes
    if with_kube:  # first run: builds the control plane (progress on stderr); then cached
        say("control plane binaries (scripts/testbin.sh; built on the first run, then cached)")
        Binaries.build(PACKAGE_ROOT)
    state_dir = state_dir.resolve()
    created = _prepare_dir(state_dir, say)
    topo = plan(compiled.config, compiled.registry, nodes=nodes)
    for _ in range(8):  # another lab (or test) may hold a name: draw another lab id
        if not set(topo.netns_names()) & set(list_netns()):
            break
        topo = plan(compiled.config, compiled.registry, nodes=nodes)
    else:
        raise LabError("could not find unused namespace names for the lab")
    state = LabState(state_dir, lab_id=topo.lab_id, created_dir=created, phase="building", kube=with_kube,
                     inputs=inputs.as_dict(), topology=topo.as_dict())
    state.save()
    lab_policies = [d for d in compiled.policies if d["metadata"]["namespace"] == LAB_NAMESPACE]
    (state_dir / LAB_POLICIES).write_text(yaml.safe_dump_all(lab_policies, sort_keys=False))
    t0 = time.monotonic()

    def step(text: str) -> None:
        say(f"[{time.monotonic() - t0:5.1f}s] {text}")

    try:
        sandbox = build.start_ovn(state)
        step(f"ovn: NB, SB, northd, chassis {sandbox.chassis_name} (ovs-vswitchd netdev + ovn-controller)")
        build.build_logical(sandbox, topo)
        build.build_pods(state, sandbox, topo)
        step(f"topology: {CLUSTER_ROUTER}, {len(topo.nodes)} node switches, join switch, "
             f"{len(topo.pods)} pods bound on br-int")
        for pod in topo.pods:
            say(f"         {pod.name:<10} {pod.node:<10} {pod.address}")
        build.build_uplink(state, topo, str(compiled.config.layout.cluster))
        build.start_servers(state, topo, compiled.services)
        step(f"internet {topo.internet.address} + {topo.internet.site2}, servers on "
             + " ".join(s.label for s in compiled.services if s.proto != "icmpv6"))
        if with_kube:
            kube.start(state)
            step("kubernetes: etcd, kube-apiserver, controller-manager, scheduler; zonectl installed "
                 "(manifests/install.sh), zones and policies applied with kubectl, all Ready")
            say(kube.get(state.state_dir)[0])
            ovn_line = "ovn: the zonectl controller wrote the ACLs"
        result = enforce.start_gateway(state, topo.gateway.netns)
        step(f"gateway: {'; '.join(result.get('changes') or ['no change'])}")
        dns.ensure(state, compiled, topo)
        step(f"dns: the internet's on {topo.internet.dns} ({', '.join(n for n, _ in topo.internet.names)}), "
             f"DNS64 (the rendered Corefile) on {topo.dns}; inbound maps "
             + ", ".join(f"{v4} -> {pod}" for v4, pod in topo.internet.maps))
        if not with_kube:
            ovn_line = enforce.ovn_sync(Path(state.ovn_dir) / "nb.sock", compiled).lines()[0]
        sandbox.wait_hv()
        step(ovn_line)
        state.phase = "up"
        state.save()
    except BaseException:
        say("lab up failed; removing what was made")
        teardown(state)
        raise
    say(f"lab up in {time.monotonic() - t0:.1f}s (state {state_dir}); next: zonectl lab test")
    for line in inspect_commands(state, topo, inputs):
        say(line)
    return state, topo


def inspect_commands(state: LabState, topo: Topology, inputs: Inputs) -> list[str]:
    """The lab's OVN and gateway seen as a deployment's are: `gateway status` and `doctor` pointed at them."""
    gateway = f"--state-dir {state.state_dir / 'gateway'} --netns {topo.gateway.netns}"
    lines = [
        "inspect it as a deployment:",
        f"  zonectl gateway status --config {inputs.config} {gateway}",
        f"  zonectl doctor --config {inputs.config} --zones {inputs.zones} -f {inputs.policies} "
        f"-f {state.state_dir / LAB_POLICIES} --nb unix:{Path(state.ovn_dir) / 'nb.sock'} --gateway {gateway} --skip crds",
    ]
    info = kube.read_info(state.state_dir)
    if state.kube and info.get("kubectl"):
        lines.append(f"  {info['kubectl']} --kubeconfig {info['kubeconfig']} get {kube.KINDS} -A")
    return lines


def down(state_dir: Path, *, say: Say = print) -> list[str]:
    """Remove everything the ledger lists; an absent lab is an error (nothing to do is worth saying)."""
    require_root()
    state = load_state(state_dir.resolve())
    removed = teardown(state)
    for line in removed:
        say(f"removed {line}")
    return removed


def _running(state_dir: Path) -> tuple[LabState, Compiled, Topology]:
    require_root()
    state = load_state(state_dir.resolve())
    if state.phase != "up":
        raise LabError(f"the lab in {state_dir} is not up (phase {state.phase}); run `zonectl lab up`")
    compiled = compile_inputs(Inputs.from_dict(state.inputs))
    if state.kube:  # the cluster's objects are what the controller enforces
        compiled = compiled.with_policies(kube.stored_policies(state.state_dir))
    return state, compiled, Topology.from_dict(state.topology)


def sync(state_dir: Path, *, say: Say = print) -> Drift:
    """Re-apply through the operator's code paths; returns what was repaired."""
    state, compiled, topo = _running(state_dir)
    ovn_report = enforce.ovn_sync(Path(state.ovn_dir) / "nb.sock", compiled)
    build.attach_ovn(state).wait_hv()
    for line in ovn_report.lines():
        say(line)
    if enforce.gateway_running(state):
        result = enforce.reapply_gateway(state)
    else:  # the daemon died: end what it left in its namespace (orphaned Taygas hold the TUNs), start anew
        say("gateway daemon not running: restarting it")
        enforce.clear_gateway_netns(topo.gateway.netns)
        result = enforce.start_gateway(state, topo.gateway.netns)
    if not result.get("ok"):
        raise LabError(f"the gateway refused the policies (previous state kept): {result.get('error')}")
    changes = result.get("changes") or []
    say(f"gateway apply: {'; '.join(changes) if changes else 'nothing to do'}")
    started = dns.ensure(load_state(state_dir.resolve()), compiled, topo)
    say(f"dns: {'started ' + ', '.join(started) if started else 'nothing to do'}")
    return Drift([str(c) for c in ovn_report.changes], list(changes), [f"started {s}" for s in started])


def drift(state: LabState, compiled: Compiled, topo: Topology) -> Drift:
    """Desired vs actual at both enforcement points, as the OVN backend and the gateway see it."""
    ovn_report = enforce.ovn_sync(Path(state.ovn_dir) / "nb.sock", compiled, mode="log")
    gateway = enforce.gateway_drift(compiled, state.state_dir, topo)
    if not enforce.gateway_running(state):
        gateway.insert(0, "the gateway daemon is not running (Tayga unsupervised or gone): run `zonectl lab up`")
    return Drift([str(c) for c in ovn_report.changes], gateway, dns.drift(state))


def test(state_dir: Path, *, repair: bool = False, export_format: str = "csv", say: Say = print) -> int:
    """Check drift, probe the matrix, print it with the export and counters; 0 only if all agree."""
    state, compiled, topo = _running(state_dir)
    found = drift(state, compiled, topo)
    if found.any and repair:
        say("drift found; repairing (--repair):")
        for line in found.lines()[:-1]:
            say(line)
        sync(state_dir, say=say)
        state = load_state(state_dir.resolve())  # sync may have recorded a restarted gateway daemon
        found = drift(state, compiled, topo)
    return check(state, compiled, topo, found, export_format=export_format, say=say)


def check(state: LabState, compiled: Compiled, topo: Topology, found: Drift, *, export_format: str,
          say: Say) -> int:
    assert compiled.config.nat64 is not None
    nat64 = compiled.config.nat64
    matrix, probes = plan_matrix(topo, compiled.ruleset, nat64, compiled.services)
    inbound, inbound_probes = plan_inbound(topo, compiled.ruleset, nat64, compiled.services)
    sources = {p.netns for p in probes}
    for ns in sources:
        traffic.flush_neighbors(ns)
    t0 = time.monotonic()
    everything = probes + inbound_probes
    results = traffic.send(everything)
    # A probe the policy allows but that got no answer is sent once more with a longer timeout: on a
    # busy 2-core machine a first SYN can miss its 1 s window. Nothing is retried the other way: a
    # packet that got through against the policy is never a fluke.
    cells = matrix.cells_by_key | inbound.cells_by_key
    again = [replace(p, timeout=RETRY_TIMEOUT) for p in everything
             if cells[p.id].expected.allowed and not (p.id in results and results[p.id].ok)]
    if again:
        results.update(traffic.send(again))
    matrix, inbound = observe(matrix, results), observe(inbound, results)
    elapsed = time.monotonic() - t0
    nodes = {n.name: n for n in topo.nodes}
    nd = [traffic.neighbor(p.netns, p.name, str(nodes[p.node].router_ip.ip), nodes[p.node].router_mac)
          for p in topo.pods if p.netns in sources]
    sections: dict[str, str] = {}
    kube_ready = True
    if state.kube:
        sections["kubernetes: kubectl get securityzones,securityzonepolicies -A"], kube_ready = kube.get(state.state_dir)
    sections |= {
        "inbound: the IPv4 internet to the published pods (gateway static maps)": render_text(inbound),
        "drift (desired vs actual)": "\n".join(found.lines()),
        "ICMPv6 neighbour discovery through OVN": report.nd_text(nd),
        "NAT64 egress: IPv4 source the internet saw, per zone": report.egress_text(matrix),
        f"firewall export ({export_format})": report.export_text(compiled, topo, export_format),
        "gateway counters (per zone, from its /metrics)": report.counters_text(topo.gateway.netns),
    }
    retried = f", {len(again)} sent again" if again else ""
    say(f"== reachability: {len(everything)} probes (TCP, UDP, ICMPv6 echo) in {elapsed:.1f}s{retried}; "
        f"rows: from zone, columns: to zone / IPv4 host via NAT64, by address and by name (DNS64 {topo.dns})")
    say(render_text(matrix))
    for title, text in sections.items():
        say(f"\n== {title}")
        say(text)
    report.write_pictures(state.state_dir, matrix, sections)
    ok = matrix.passed and inbound.passed and not found.any and all(c.ok for c in nd) and kube_ready
    say(f"\nlab test: {'PASS' if ok else 'FAIL'} (matrix: {state.state_dir / 'matrix.html'})")
    return 0 if ok else 1
