"""Pod CREATE through kube-apiserver: with zonectl's pod webhook, and the same API server without it.

The mode ``benchmarks/admission.py --apiserver``. A real control plane (zonectl.harness.kubecluster:
etcd, kube-apiserver, controller-manager, scheduler, built by scripts/testbin.sh) with zonectl installed
by manifests/install.sh (``ovn.mode: interconnect``: admission needs no OVN); the controller's two
replicas are real ``zonectl`` processes behind the webhook Service, reached over TLS through their
EndpointSlice. The load generator POSTs a ~3 KB pod as a Deployment makes it (benchmarks/admission.py's
``pod_body``, labelled with a zone) to /api/v1/namespaces/bench/pods as the admin, over TLS.

  zonectl  the MutatingWebhookConfiguration as install.sh applies it
  none     the same with that configuration deleted (the ValidatingAdmissionPolicy stays: it is CEL in
           the API server and applies to both)

Rounds alternate between the two; each round runs an open loop at --rate creates/s, then a closed loop
with --concurrency in flight (throughput); the pods are deleted after every round. The pods name a
scheduler that does not exist, so nothing schedules or "runs" them: the figures are admission + storage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from admission import closed_loop, open_loop, pod_body

ROOT = Path(__file__).resolve().parents[1]
HINT = "zonectl.io/ipam-hint"
NS = "bench"


def bench_pod(i: int) -> dict[str, Any]:
    pod = pod_body(i)
    meta = pod["metadata"]
    meta.update(namespace=NS, labels={**meta["labels"], "securityZone": "bench"})
    del meta["ownerReferences"]  # no ReplicaSet behind it: the garbage collector would delete the pods
    pod["spec"].update(serviceAccountName="default", schedulerName="zonectl-bench-unscheduled")
    return pod


def created(status: int, data: bytes) -> bool:
    return status == 201


class Bench:
    def __init__(self, kube: Any, work: Path) -> None:
        self.kube = kube
        self.work = work
        self.webhooks = work / "webhooks.json"
        self.on = True  # install.sh leaves the webhook configuration in place

    def setup(self) -> None:
        import yaml

        kube = self.kube
        kube.kubelet.add_node("node-1")
        kube.kubelet.add_node("node-2")
        docs = list(yaml.safe_load_all((ROOT / "manifests" / "config.yaml").read_text()))
        config = yaml.safe_load(next(d for d in docs if d["metadata"]["name"] == "zonectl-config")["data"]["zonectl.yaml"])
        config["ovn"] = {"mode": "interconnect", "drift": "repair"}
        (self.work / "zonectl.yaml").write_text(yaml.safe_dump(config))
        run = kube.install("--tls", "openssl", "--config", str(self.work / "zonectl.yaml"))
        if run.returncode != 0:
            raise RuntimeError(f"manifests/install.sh failed:\n{run.stderr}\n{kube.controller_logs()[-2000:]}")
        kube.kubectl("create", "namespace", NS)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": "bench"},
            "spec": {"id": 0x2200, "namespaces": [NS]}}))
        hook = json.loads(kube.kubectl("get", "mutatingwebhookconfiguration", "zonectl", "-o", "json").stdout)
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            hook["metadata"].pop(key, None)
        self.webhooks.write_text(json.dumps(hook))
        self.expect(True)

    def hinted(self) -> bool:
        out = self.kube.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(bench_pod(0)))
        return HINT in (json.loads(out.stdout)["metadata"].get("annotations") or {})

    def expect(self, on: bool, timeout: float = 60) -> None:
        """Wait until the API server's answers show the webhook on (or off), five times in a row."""
        deadline, streak = time.monotonic() + timeout, 0
        while streak < 5:
            streak = streak + 1 if self.hinted() == on else 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webhook did not turn {'on' if on else 'off'}")

    def webhook(self, on: bool) -> None:
        if on:
            self.kube.kubectl("create", "-f", str(self.webhooks))
        else:
            self.kube.kubectl("delete", "mutatingwebhookconfiguration", "zonectl")
        self.expect(on)
        self.on = on

    def settle(self, timeout: float = 90) -> None:
        """Wait until the controller replicas are idle (their watches have caught up with the last round's
        pod events), so a round is not measured against the backlog of the one before."""
        pids = [r.proc.pid for r in self.kube.kubelet.running().values() if r.proc is not None]

        def cpu() -> float:
            ticks = 0
            for pid in pids:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            return ticks / os.sysconf("SC_CLK_TCK")

        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 2 and time.monotonic() < deadline:
            before = cpu()
            time.sleep(0.5)
            quiet = quiet + 1 if cpu() - before < 0.05 else 0

    def clean(self) -> None:
        """Delete the round's pods with one deletecollection, and wait until they are gone."""
        core = self.kube.core
        core.delete_collection_namespaced_pod(NS, body={"gracePeriodSeconds": 0})
        deadline = time.monotonic() + 120
        while core.list_namespaced_pod(NS, limit=1).items:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pods in {NS} were not deleted")
            time.sleep(0.5)
        self.settle()


def webhook_buckets(bench: Bench) -> dict[float, float]:
    """The API server's own histogram of its calls to the pod webhook (cumulative count per bucket)."""
    import re
    import urllib.request

    plane = bench.kube.plane
    with urllib.request.urlopen(f"{plane.url}/metrics", context=plane.tls_context(), timeout=10) as resp:
        text = resp.read().decode()
    out: dict[float, float] = {}
    for m in re.finditer(r'^apiserver_admission_webhook_admission_duration_seconds_bucket\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("name") == "pod-zone-hint.zonectl.io" and labels.get("operation") == "CREATE":
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            out[le] = out.get(le, 0.0) + float(m.group(2))
    return out


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, dict[str, list[Any]]]:
    import aiohttp

    plane = bench.kube.plane
    url = f"{plane.url}/api/v1/namespaces/{NS}/pods"
    tls = plane.tls_context()
    payloads = [json.dumps(bench_pod(i)).encode() for i in range(64)]
    results: dict[str, dict[str, list[Any]]] = {"rate": {"zonectl": [], "none": []}, "max": {"zonectl": [], "none": []},
                                                "calls": {"zonectl": []}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        await open_loop(session, url, tls, payloads, args.rate, 2, ok=created)  # warm-up, webhook on
        await asyncio.to_thread(bench.clean)
        for r in range(args.rounds):
            for name in (("zonectl", "none") if r % 2 == 0 else ("none", "zonectl")):
                if (name == "zonectl") != bench.on:
                    await asyncio.to_thread(bench.webhook, name == "zonectl")
                before = webhook_buckets(bench)
                results["rate"][name].append(await open_loop(session, url, tls, payloads, args.rate,
                                                             args.seconds / args.rounds, ok=created))
                if name == "zonectl":  # how long the API server waited for the webhook, this round
                    after = webhook_buckets(bench)
                    results["calls"]["zonectl"].append({le: after[le] - before.get(le, 0.0) for le in after})
                results["max"][name].append(await closed_loop(session, url, tls, payloads, args.concurrency,
                                                              args.max_seconds / args.rounds, ok=created))
                await asyncio.to_thread(bench.clean)
    return results


def row(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {
        "n": sum(r["n"] for r in runs), "errors": sum(r["errors"] for r in runs)}


def report(results: dict[str, dict[str, list[Any]]], args: argparse.Namespace) -> int:
    print(f"pod CREATE through kube-apiserver v1.36 ({os.cpu_count()} CPUs, HTTPS, "
          f"{len(json.dumps(bench_pod(0)))}-byte pods; medians over {args.rounds} alternating rounds)")
    status = 0
    for phase, title in (("rate", f"open loop at {args.rate:g} creates/s"), ("max", f"closed loop, {args.concurrency} in flight")):
        z, n = row(results[phase]["zonectl"]), row(results[phase]["none"])
        print(f"\n{title}:")
        print(f"  {'':10} {'creates':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per s':>8}")
        for name, r in (("zonectl", z), ("none", n)):
            print(f"  {name:10} {r['n']:8.0f} {r['errors']:6.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.2f} {r['rate']:8.1f}")
            status |= int(r["errors"] > 0)
        print(f"  ratio      p50 {z['p50'] / n['p50']:.2f}x  p99 {z['p99'] / n['p99']:.2f}x  throughput {z['rate'] / n['rate']:.2f}x")
        if phase == "rate":
            overhead = z["p99"] - n["p99"]
            print(f"  webhook p99 overhead {overhead:.2f} ms (goal < 5 ms at 100 creates/s): "
                  f"{'met' if overhead < 5 else 'MISSED'}")
            calls: dict[float, float] = {}
            for r in results["calls"]["zonectl"]:
                for le, count in r.items():
                    calls[le] = calls.get(le, 0.0) + count
            total = calls.get(float("inf"), 0.0)
            if total:
                shares = ", ".join(f"{calls[le] / total:.1%} within {le * 1e3:g} ms" for le in sorted(calls)
                                   if le <= 0.1)
                print(f"  the API server's calls to the webhook ({total:.0f}, its own histogram): {shares}")
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="admission.py --apiserver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0, help="open-loop pod creates per second (default 100)")
    p.add_argument("--seconds", type=float, default=40.0, help="open-loop seconds per variant, all rounds (default 40)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop creates in flight (default 16)")
    p.add_argument("--max-seconds", type=float, default=12.0, help="closed-loop seconds per variant (default 12)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from zonectl.harness.controlplane import Binaries
    from zonectl.harness.kubecluster import KubeCluster

    if os.geteuid() != 0:
        print("admission.py --apiserver needs root (pod addresses go on a veth link)", file=sys.stderr)
        return 2
    binaries = Binaries.build(ROOT)
    with tempfile.TemporaryDirectory(prefix="zonectl-bench-") as tmp, KubeCluster(binaries, ROOT, audit=False) as kube:
        bench = Bench(kube, Path(tmp))
        bench.setup()
        results = asyncio.run(measure(bench, args))
    return report(results, args)
