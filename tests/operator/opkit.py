"""Operator-layer test helpers: the example config and zones, AdmissionReview bodies, kopf's real webhook server.

Async code runs through ``run()`` (a fresh event loop per call) so no pytest plugin is needed.
"""

from __future__ import annotations

import copy

import asyncio
import base64
import contextlib
import http.client
import json
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from zonectl.inputs import load_documents, of_kind
from zonectl.operator.config import ControllerConfig, parse_controller_config
from zonectl.operator.handlers import Controller
from zonectl.operator.metrics import Metrics
from zonectl.operator.webhook import ZonectlWebhookServer, offline_admission
from zonectl.operator.zonestate import ZoneState

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
T = TypeVar("T")

# Namespaces of the example cluster and their labels (dmz is also allowed by label selector).
NAMESPACES: dict[str, dict[str, str]] = {
    "dmz-apps": {"kubernetes.io/metadata.name": "dmz-apps"},
    "web-apps": {"kubernetes.io/metadata.name": "web-apps"},
    "db": {"kubernetes.io/metadata.name": "db"},
    "edge": {"kubernetes.io/metadata.name": "edge", "zonectl.io/zone-dmz": "allowed"},
    "zonectl-system": {"kubernetes.io/metadata.name": "zonectl-system"},
}


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def config_body(**operator: Any) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    body["operator"] = operator
    return body


@pytest.fixture
def op_config() -> ControllerConfig:
    return parse_controller_config(config_body())


def zone_bodies() -> list[dict[str, Any]]:
    return of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone")


def policy_bodies() -> list[dict[str, Any]]:
    return of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")


def stored(bodies: list[dict[str, Any]], uid_prefix: str) -> dict[str, dict[str, Any]]:
    """Objects by name as the API server would hand them to a handler: generation 1 and a uid each."""
    out = {}
    for body in bodies:
        body = copy.deepcopy(body)
        body["metadata"].update(generation=1, uid=f"{uid_prefix}{body['metadata']['name']}")
        out[body["metadata"]["name"]] = body
    return out


def policies() -> dict[str, dict[str, Any]]:
    return stored(policy_bodies(), "uid-")


def zones() -> dict[str, dict[str, Any]]:
    return stored(zone_bodies(), "uid-zone-")


def make_state(config: ControllerConfig) -> ZoneState:
    state = ZoneState(config.core.layout)
    for body in zone_bodies():
        state.upsert_zone(body)
    for name, labels in NAMESPACES.items():
        state.set_namespace(name, labels)
    return state


@pytest.fixture
def state(op_config: ControllerConfig) -> ZoneState:
    return make_state(op_config)


def pod(name: str = "p", namespace: str = "dmz-apps", labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}, **extra}


RESOURCES = {
    "Pod": ("", "v1", "pods"),
    "SecurityZone": ("zonectl.io", "v1alpha1", "securityzones"),
    "SecurityZonePolicy": ("zonectl.io", "v1alpha1", "securityzonepolicies"),
}


def review(obj: dict[str, Any] | None, *, operation: str = "CREATE", old: dict[str, Any] | None = None,
           dry_run: bool = False, kind: str | None = None) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it."""
    body = obj if obj is not None else old
    assert body is not None
    kind = kind or body["kind"]
    group, version, plural = RESOURCES[kind]
    meta = body.get("metadata", {})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    raw = response["response"].get("patch")
    return json.loads(base64.b64decode(raw)) if raw else []


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), as the webhook Secret would carry."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the webhook's test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "tls.crt", d / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=zonectl-webhook",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@contextlib.asynccontextmanager
async def webhook_url(ctl: Controller, tls: tuple[Path, Path] | None, fast: bool = False) -> AsyncIterator[str]:
    """Start kopf's webhook server (HTTPS with ``tls``, else HTTP) on 127.0.0.1; yield its base URL.

    ``fast`` serves the pod webhook through the fast path, as the controller does by default; without
    it every review goes through kopf's admission engine and the ``@kopf.on.mutate`` handler.
    """
    from zonectl.operator.handlers import POD_WEBHOOK, admission_registry

    kwargs: dict[str, Any] = {"addr": "127.0.0.1", "metrics": ctl.metrics,
                              "fast": {POD_WEBHOOK: ctl.pod_review} if fast else None}
    if tls:
        kwargs.update(certfile=str(tls[0]), pkeyfile=str(tls[1]))
    else:
        kwargs["insecure"] = True
    server = ZonectlWebhookServer(**kwargs)
    gen = server(offline_admission(admission_registry(ctl)))
    client_config = await gen.__anext__()
    try:
        yield client_config["url"].rstrip("/")
    finally:
        await gen.aclose()


@contextlib.asynccontextmanager
async def serve_webhooks(ctl: Controller, tls: tuple[Path, Path] | None,
                         fast: bool = False) -> AsyncIterator[Callable[[str, dict], Awaitable[dict]]]:
    """``webhook_url``, yielding ``post(id, review)`` (which asserts HTTP 200) instead of the URL."""
    ssl_ctx: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(tls[0])) if tls else False
    async with webhook_url(ctl, tls, fast) as url, aiohttp.ClientSession() as session:
        async def post(webhook: str, body: dict) -> dict:
            async with session.post(f"{url}/{webhook}", json=body, ssl=ssl_ctx) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        yield post


class BackgroundWebhooks:
    """Two webhook servers of one controller (kopf's engine, the fast path) on an event loop in a thread.

    For tests that are not async (hypothesis): ``post(engine, webhook, raw)`` sends raw bytes over one
    kept-alive HTTPS connection per server and returns (HTTP status, parsed JSON body or None, text).
    """

    ENGINES = ("kopf-engine", "fast-path")

    def __init__(self, ctl: Controller, tls: tuple[Path, Path]) -> None:
        self.ctl, self.tls = ctl, tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webhooks", daemon=True)
        self.stack = contextlib.AsyncExitStack()
        self.urls: dict[str, str] = {}
        self.conns: dict[str, http.client.HTTPSConnection] = {}

    def __enter__(self) -> "BackgroundWebhooks":
        self.thread.start()

        async def start() -> None:
            for engine in self.ENGINES:
                self.urls[engine] = await self.stack.enter_async_context(
                    webhook_url(self.ctl, self.tls, fast=engine == "fast-path"))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self

    def _conn(self, engine: str) -> http.client.HTTPSConnection:
        conn = self.conns.get(engine)
        if conn is None:
            netloc = self.urls[engine].split("//", 1)[1]
            ctx = ssl.create_default_context(cafile=str(self.tls[0]))
            conn = self.conns[engine] = http.client.HTTPSConnection(netloc, context=ctx, timeout=30)
        return conn

    def post(self, engine: str, webhook: str, raw: bytes) -> tuple[int, Any, str]:
        for attempt in (1, 2):  # the server may close a kept-alive connection after an error answer
            conn = self._conn(engine)
            try:
                conn.request("POST", f"/{webhook}", body=raw, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read().decode("utf-8", "replace")
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.conns.pop(engine, None)
                if attempt == 2:
                    raise
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        return resp.status, data, text

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns.values():
            conn.close()
        asyncio.run_coroutine_threadsafe(self.stack.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def new_controller(config: ControllerConfig, state: ZoneState) -> Controller:
    return Controller(config=config, state=state, metrics=Metrics())


# ----- handler harness: real kopf Patch/Body objects, kopf's real Event queue ---------------------

import logging  # noqa: E402

import kopf  # noqa: E402
from kopf._core.engines import posting  # noqa: E402


class Handled:
    """One handler call: the patch it produced and the Events it queued."""

    def __init__(self, patch: kopf.Patch, events: list[Any]) -> None:
        self.patch = patch
        self.events = events

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


async def call(handler: Callable[..., Awaitable[Any]], raw: dict[str, Any], **kwargs: Any) -> Handled:
    """Call a kopf handler the way kopf does (Body, Patch, logger kwargs), capturing Events from kopf's queue.

    The status the handler patched is merged into ``raw`` afterwards, as the API server would (kopf applies
    the patch also when the handler raises, e.g. a TemporaryError that retries a deletion).
    """
    queue: asyncio.Queue = asyncio.Queue()
    posting.settings_var.set(kopf.OperatorSettings())
    posting.event_queue_var.set(queue)
    posting.event_queue_loop_var.set(asyncio.get_running_loop())
    patch = kopf.Patch()
    try:
        await handler(body=kopf.Body(raw), patch=patch, logger=logging.getLogger("test"), **kwargs)
    finally:
        status = dict(patch).get("status")
        if status:
            raw.setdefault("status", {}).update(status)
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return Handled(patch, events)


def condition(raw: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in raw["status"]["conditions"] if c["type"] == type_)


def acl_rows(nbctl: Callable[..., str]) -> list[dict[str, Any]]:
    """Every NB ACL row as a dict (uuid, match, priority, external_ids)."""
    data = json.loads(nbctl("--format=json", "--columns=_uuid,match,priority,action,direction,external_ids", "list", "ACL"))
    out = []
    for row in data["data"]:
        r = dict(zip(data["headings"], row, strict=True))
        out.append({"uuid": r["_uuid"][1], "match": r["match"], "priority": r["priority"], "action": r["action"],
                    "direction": r["direction"], "external_ids": dict(r["external_ids"][1])})
    return out


def policy_acls(nbctl: Callable[..., str], key: str) -> list[dict[str, Any]]:
    return [r for r in acl_rows(nbctl) if r["external_ids"].get("zonectl.io/policy") == key]
