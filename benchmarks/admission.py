"""Admission latency: zonectl's pod webhook on kopf's webhook server beside a bare aiohttp handler.

Three servers run in one child process (one event loop, as in the controller) over HTTPS with the same
certificate; the load generator runs in this process:

  zonectl     kopf's WebhookServer, pod webhook on zonectl's fast path (the controller's default)
  kopf-engine kopf's WebhookServer and admission engine calling the @kopf.on.mutate handler
  bare        a bare aiohttp handler that parses the same AdmissionReview and returns the same patch,
              with no logic at all: the floor any Python webhook pays for HTTP + TLS + JSON

Each phase alternates between the servers round by round, so machine noise hits all of them alike.

Phases:
  rate   open loop at --rate reviews/s for --seconds (the target: p99 <= 10 ms at 200/s)
  max    closed loop with --concurrency in flight for --seconds (throughput)

    python benchmarks/admission.py                    # defaults: 200/s for 10 s, then max throughput
    python benchmarks/admission.py --rate 400 --seconds 5 --http

``--apiserver`` measures something else: pod CREATE through a real kube-apiserver with zonectl's webhook
installed, against the same API server without it (benchmarks/admission_apiserver.py; needs root and the
binaries scripts/testbin.sh builds).

    sudo .venv/bin/python benchmarks/admission.py --apiserver   # 100 creates/s; ~2 min after the build
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HINT_KEY = "zonectl.io/ipam-hint"


def pod_body(i: int) -> dict[str, Any]:
    """A pod as a Deployment creates it (~3 KB of JSON): what the API server sends on every pod CREATE."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "frontend-7d9c8b6f5-", "namespace": "dmz-apps",
            "labels": {"app": "frontend", "pod-template-hash": "7d9c8b6f5", "securityZone": "dmz",
                       "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/version": "1.4.2"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "frontend-7d9c8b6f5",
                                 "uid": str(uuid.uuid4()), "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "serviceAccountName": "frontend",
            "containers": [{
                "name": "app", "image": "registry.example/shop/frontend:1.4.2", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"},
                          {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
                "env": [{"name": f"SETTING_{k}", "value": f"value-{k}-{i}"} for k in range(12)],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 10},
                "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/frontend"},
                                 {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                  "readOnly": True}],
            }, {
                "name": "proxy", "image": "registry.example/envoy:1.29", "args": ["--config", "/etc/envoy/envoy.yaml"],
                "ports": [{"containerPort": 15001, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            }],
            "volumes": [{"name": "config", "configMap": {"name": "frontend-config"}},
                        {"name": "kube-api-access", "projected": {"sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchLabels": {"app": "frontend"}}}],
        },
    }


def review(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "dmz-apps", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod_body(i), "oldObject": None, "dryRun": False,
        },
    }


# ----- the server process -----------------------------------------------------------------------

async def serve(cert: str, key: str, insecure: bool) -> None:
    import aiohttp.web
    import yaml

    from zonectl.inputs import load_documents, of_kind
    from zonectl.operator.config import parse_controller_config
    from zonectl.operator.handlers import POD_WEBHOOK, Controller, admission_registry
    from zonectl.operator.metrics import Metrics
    from zonectl.operator.webhook import ZonectlWebhookServer, offline_admission
    from zonectl.operator.zonestate import ZoneState

    body = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    config = parse_controller_config(body)
    state = ZoneState(config.core.layout)
    for z in of_kind(load_documents([ROOT / "examples" / "zones.yaml"]), "SecurityZone"):
        state.upsert_zone(z)
    for ns in ("dmz-apps", "web-apps", "db"):
        state.set_namespace(ns, {"kubernetes.io/metadata.name": ns})
    ctl = Controller(config=config, state=state, metrics=Metrics())
    tls = {} if insecure else {"certfile": cert, "pkeyfile": key}
    fn = offline_admission(admission_registry(ctl))
    fast = ZonectlWebhookServer(addr="127.0.0.1", insecure=insecure, metrics=ctl.metrics,
                                fast={POD_WEBHOOK: ctl.pod_review}, **tls)
    slow = ZonectlWebhookServer(addr="127.0.0.1", insecure=insecure, metrics=ctl.metrics, **tls)
    gens = [fast(fn), slow(fn)]
    fast_config, slow_config = [await g.__anext__() for g in gens]

    hint = state.table.hints["dmz"]

    async def bare(request: aiohttp.web.Request) -> aiohttp.web.Response:
        data = json.loads(await request.text())
        ops = [{"op": "add", "path": f"/metadata/annotations/{HINT_KEY.replace('/', '~1')}", "value": hint}]
        return aiohttp.web.json_response({
            "apiVersion": data["apiVersion"], "kind": data["kind"],
            "response": {"uid": data["request"]["uid"], "allowed": True, "patchType": "JSONPatch",
                         "patch": base64.b64encode(json.dumps(ops).encode()).decode()}})

    ctx = None
    if not insecure:
        ctx = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.post("/{id:.*}", bare)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "http" if insecure else "https"
    import gc

    gc.collect()
    gc.freeze()  # as the controller does after start-up (zonectl/operator/run.py)
    print(json.dumps({"zonectl": fast_config["url"].rstrip("/") + "/" + POD_WEBHOOK,
                      "kopf-engine": slow_config["url"].rstrip("/") + "/" + POD_WEBHOOK,
                      "bare": f"{scheme}://127.0.0.1:{port}/{POD_WEBHOOK}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        for g in gens:
            await g.aclose()


# ----- the load generator -----------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def allowed(status: int, data: bytes) -> bool:
    """An AdmissionReview answer that admits the pod."""
    return status == 200 and (b'"allowed": true' in data or b'"allowed":true' in data)


async def open_loop(session, url: str, ssl_ctx, payloads: list[bytes], rate: float, seconds: float,
                    ok: Callable[[int, bytes], bool] = allowed) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)

    async def one(i: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        async with session.post(url, data=payloads[i % len(payloads)], ssl=ssl_ctx,
                                headers={"Content-Type": "application/json"}) as resp:
            if not ok(resp.status, await resp.read()):
                errors += 1
        latencies.append(time.perf_counter() - started)

    tasks = []
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return {"n": len(latencies), "errors": errors, "p50": percentile(latencies, 0.5) * 1e3,
            "p99": percentile(latencies, 0.99) * 1e3, "max": max(latencies) * 1e3, "rate": len(latencies) / elapsed}


async def closed_loop(session, url: str, ssl_ctx, payloads: list[bytes], concurrency: int, seconds: float,
                      ok: Callable[[int, bytes], bool] = allowed) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.post(url, data=payloads[i % len(payloads)], ssl=ssl_ctx,
                                    headers={"Content-Type": "application/json"}) as resp:
                if not ok(resp.status, await resp.read()):
                    errors += 1
            latencies.append(time.perf_counter() - started)
            i += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"n": len(latencies), "errors": errors, "p50": percentile(latencies, 0.5) * 1e3,
            "p99": percentile(latencies, 0.99) * 1e3, "max": max(latencies) * 1e3, "rate": len(latencies) / elapsed}


async def drive(urls: dict[str, str], cert: str | None, args: argparse.Namespace) -> dict[str, dict[str, list[dict]]]:
    import aiohttp

    ssl_ctx: Any = ssl.create_default_context(cafile=cert) if cert else False
    payloads = [json.dumps(review(i)).encode() for i in range(64)]
    results: dict[str, dict[str, list[dict]]] = {"rate": {n: [] for n in urls}, "max": {n: [] for n in urls}}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in urls.values():  # warm-up: connections, TLS sessions, caches
            await open_loop(session, url, ssl_ctx, payloads, 200, 1)
        for _ in range(args.rounds):
            for name, url in urls.items():
                results["rate"][name].append(
                    await open_loop(session, url, ssl_ctx, payloads, args.rate, args.seconds / args.rounds))
        if not args.no_max:
            for _ in range(args.rounds):
                for name, url in urls.items():
                    results["max"][name].append(
                        await closed_loop(session, url, ssl_ctx, payloads, args.concurrency, args.max_seconds / args.rounds))
    return results


def merge(runs: list[dict]) -> dict[str, float]:
    """Rounds -> one row: median of each figure across rounds (robust to one noisy round)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"n": sum(r["n"] for r in runs),
                                                                         "errors": sum(r["errors"] for r in runs)}


def report(results: dict[str, dict[str, list[dict]]], args: argparse.Namespace, scheme: str) -> int:
    print(f"zonectl admission benchmark ({scheme}, {os.cpu_count()} CPUs; pod body "
          f"{len(json.dumps(review(0)))} bytes; rounds alternate between servers; medians over {args.rounds} rounds)")
    status = 0
    for phase, title in (("rate", f"open loop at {args.rate:g}/s"), ("max", f"closed loop, {args.concurrency} in flight")):
        if not results[phase]["zonectl"]:
            continue
        rows = {name: merge(runs) for name, runs in results[phase].items()}
        b = rows["bare"]
        print(f"\n{title}:")
        print(f"  {'':12} {'reviews':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per s':>8}"
              f"   {'p50/bare':>8} {'p99/bare':>8} {'rate/bare':>9}")
        for name, r in rows.items():
            print(f"  {name:12} {r['n']:8.0f} {r['errors']:6.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.2f} "
                  f"{r['rate']:8.1f}   {r['p50'] / b['p50']:7.2f}x {r['p99'] / b['p99']:7.2f}x {r['rate'] / b['rate']:8.2f}x")
            if r["errors"]:
                status = 1
        if phase == "rate":
            z = rows["zonectl"]
            print(f"  target (zonectl): p99 <= 10 ms {'met' if z['p99'] <= 10.0 else 'MISSED'}; "
                  f"p99 within 1.5x of bare {'met' if z['p99'] <= 1.5 * b['p99'] else 'MISSED'}")
    return status


def make_cert(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=bench",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200.0, help="open-loop reviews per second (default 200)")
    p.add_argument("--seconds", type=float, default=10.0, help="open-loop duration per server (default 10)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per phase (default 5)")
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop requests in flight (default 16)")
    p.add_argument("--max-seconds", type=float, default=5.0, help="closed-loop duration per server (default 5)")
    p.add_argument("--no-max", action="store_true", help="skip the throughput phase")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.add_argument("--serve", nargs=2, metavar=("CERT", "KEY"), help=argparse.SUPPRESS)
    p.add_argument("--apiserver", action="store_true",
                   help="pod CREATE through kube-apiserver, zonectl's webhook vs none (its own defaults: 100/s)")
    argv = sys.argv[1:] if argv is None else argv
    if "--apiserver" in argv:  # its own options and defaults
        from admission_apiserver import main as apiserver_main

        return apiserver_main([a for a in argv if a != "--apiserver"])
    args = p.parse_args(argv)
    if args.serve:
        cert, key = args.serve
        asyncio.run(serve(cert, key, cert == "-"))
        return 0
    with tempfile.TemporaryDirectory(prefix="zonectl-bench-") as tmp:
        cert, key = ("-", "-") if args.http else make_cert(tmp)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, __file__, "--serve", cert, key], stdout=subprocess.PIPE, env=env, text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                print("the server process did not start", file=sys.stderr)
                return 2
            urls = json.loads(line)
            results = asyncio.run(drive(urls, None if args.http else cert, args))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return report(results, args, "http" if args.http else "https")


if __name__ == "__main__":
    sys.exit(main())
