"""The lab's DNS: the internet's DNS server and the DNS64 server pods ask, both real CoreDNS.

* the internet's DNS (``file`` plugin) on 192.0.2.53 in the internet namespace: the names of the IPv4
  sites (a.example -> 198.51.100.10, b.example -> 192.0.2.10);
* the DNS64 server in the gateway namespace, on the gateway's join-switch address: the Corefile zonectl
  renders from the config's ``dns`` section (``zonectl render coredns``), with the internet's DNS as its
  upstream and the cluster zone from a zone file of the lab's pods (``<pod>.<namespace>.svc``), since
  there is no Kubernetes API for the ``kubernetes`` plugin;
* every pod's resolver (/etc/netns/<pod>/resolv.conf, which ``ip netns exec`` shows it) names the DNS64
  server, so a pod resolves a.example to the NAT64 prefix + 198.51.100.10 and connects by name.

Both servers are lab processes on the ledger (ended by pid on ``down``); ``drift`` reports one that
is gone and ``ensure`` (``lab sync``) starts it again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ..harness.coredns import CoreDns, CoreDnsError, binary, query, zone_file
from ..harness.netns import Netns
from ..procs import WaitTimeout, alive, cmdline, wait_until
from ..render.coredns import parse_dns, render_corefile
from .inputs import Compiled
from .state import LabError, LabState
from .topology import Topology

PROGRAM = "coredns"  # what the servers' command lines contain (checked before signalling them)


def _servers(state: LabState, compiled: Compiled, topo: Topology) -> dict[str, tuple[str, str, tuple[str, str, str]]]:
    """what -> (namespace, Corefile, readiness query), writing the zone files they serve."""
    d = state.state_dir / "dns"
    d.mkdir(parents=True, exist_ok=True)
    inet = topo.internet
    origin = "example"
    zone_file(d / "db.example", origin, [(name.removesuffix(f".{origin}"), "A", str(addr)) for name, addr in inet.names])
    cfg = parse_dns(compiled.config.section("dns"))
    zone_file(d / "db.cluster", cfg.cluster_domain, [(f"{p.name}.{p.namespace}.svc", "AAAA", str(p.address))
                                                    for p in topo.pods])
    dns64 = replace(cfg, upstreams=(str(inet.dns),))
    assert compiled.config.nat64 is not None
    first = inet.names[0][0]
    return {
        "internet dns": (inet.netns, f"{origin}:53 {{\n    bind {inet.dns}\n    file {d}/db.example\n}}\n",
                         (str(inet.dns), first, "A")),
        "dns64": (topo.gateway.netns, render_corefile(compiled.config.nat64, dns64, cluster_file=str(d / "db.cluster")),
                  (str(topo.dns), first, "AAAA")),
    }


def _running(state: LabState) -> dict[str, int]:
    """The lab's CoreDNS servers that still run: what -> pid (the newest record of each)."""
    out: dict[str, int] = {}
    for rec in state.processes:
        if rec.program == PROGRAM and alive(rec.pid) and PROGRAM in cmdline(rec.pid):
            out[rec.what] = rec.pid
    return out


def ensure(state: LabState, compiled: Compiled, topo: Topology) -> list[str]:
    """Start every DNS server that is not running (all of them on ``lab up``); returns what it started."""
    running = _running(state)
    started: list[str] = []
    try:
        path = binary()
    except CoreDnsError as exc:
        raise LabError(str(exc)) from None
    for what, (netns, corefile, ready) in _servers(state, compiled, topo).items():
        if what in running:
            continue
        server = CoreDns(netns, state.state_dir / "dns" / what.replace(" ", "-"), corefile, binary_path=path)
        try:
            server.start(ready)
        except CoreDnsError as exc:
            raise LabError(f"{what}: {exc}") from None
        assert server.pid is not None
        state.started_process(server.pid, PROGRAM, what)
        started.append(what)
    for pod in topo.pods:
        Netns(pod.netns).resolv_conf([str(topo.dns)])
    if started:
        _wait_pods_resolve(topo)
    return started


def _wait_pods_resolve(topo: Topology, timeout: float = 60.0) -> None:
    """Ready is when every pod gets an answer (through OVN, not only the server's own namespace). The pods
    ask at once (one process each), so a round takes a query's timeout, not one per pod."""
    name = topo.internet.names[0][0]
    waiting = {p.netns for p in topo.pods}

    def answered() -> bool:
        with ThreadPoolExecutor(max_workers=len(waiting) or 1) as pool:
            got = dict(zip(sorted(waiting), pool.map(lambda ns: query(ns, str(topo.dns), name, "AAAA", timeout=1.0),
                                                     sorted(waiting)), strict=True))
        waiting.difference_update(ns for ns, answer in got.items() if answer is not None)
        return not waiting

    try:
        wait_until(answered, timeout, "every pod to get an answer from the DNS64 server", interval=0.2)
    except WaitTimeout:
        raise LabError(f"the DNS64 server at {topo.dns} does not answer pods in {', '.join(sorted(waiting))}") from None


def drift(state: LabState) -> list[str]:
    running = _running(state)
    return [f"{what} (CoreDNS) is not running" for what in ("internet dns", "dns64") if what not in running]


def corefile_path(state_dir: Path) -> Path:
    return state_dir / "dns" / "dns64" / "Corefile"
