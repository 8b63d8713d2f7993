"""kopf's webhook server with strict review checks, a latency histogram and a fast path; kopf's engine offline.

``ZonectlWebhookServer`` is kopf's own ``WebhookServer`` (aiohttp, TLS, certificate reload) with its
request handler replaced, so that every review, whatever the webhook, is (1) read as strict JSON and
checked by ``review.check_review`` before any decision (a malformed one is answered there: an HTTP 400
with a Status body, or a denial; never a 500, never an allowed pod without its hint), (2) timed into
``zonectl_admission_duration_seconds`` and (3) answered by a "fast path" function when one is given for
its webhook: the same decision as the ``@kopf.on.mutate`` handler, without kopf's whole-body deep copy
and diff. Other webhooks go through kopf's admission engine unchanged.

``offline_admission`` builds the very function ``kopf.operator()`` passes to its webhook server
(``serve_admission_request`` bound to a registry and settings), but with the resource list given
instead of discovered from an API server. Tests and ``benchmarks/admission.py`` use it to drive the real
server and engine with AdmissionReview bodies on a machine without Kubernetes. It reaches into kopf's
private modules, so it lives here, in one place, and is never used by the running controller.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

import aiohttp.web
import kopf

from ..core.errors import Problem
from .metrics import Metrics
from .review import ENDPOINTS, MalformedReview, Review, check_review, denial, http_status

# (group, version, plural, kind, namespaced) of every resource zonectl has webhooks for.
WEBHOOK_RESOURCES: tuple[tuple[str, str, str, str, bool], ...] = tuple(
    (e.group, e.version, e.resource, e.kind, e.namespaced) for e in ENDPOINTS.values())


FastPath = Callable[[Review], "dict[str, Any]"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json(raw: bytes) -> Any:
    """The request body as strict JSON (UTF-8, no NaN/Infinity); MalformedReview (HTTP 400) otherwise."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        reason = f"not JSON ({exc})"
    except RecursionError:
        reason = "not JSON this server reads (nested too deeply)"
    raise MalformedReview([Problem("request body", reason)])


class ZonectlWebhookServer(kopf.WebhookServer):
    """kopf.WebhookServer that checks and times each review per webhook id, with optional fast paths."""

    def __init__(self, *, metrics: Metrics, fast: Mapping[str, FastPath] | None = None,
                 on_listening: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.fast = dict(fast or {})
        self.on_listening = on_listening  # called once the socket accepts connections (readiness)
        # labelled histogram per known webhook id, looked up once; any other path is "unknown" (a path
        # chosen by a caller must not add label values: that would grow the registry without bound)
        self._timers = {w: metrics.admission_seconds.labels(w) for w in (*ENDPOINTS, "unknown")}

    async def _serve(self, fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:  # type: ignore[override]
        """kopf's handler of one POST, replaced: checks first, kopf's engine (or the fast path) after."""
        started = time.perf_counter()
        webhook = request.match_info.get("id") or ""
        try:
            body = read_json(await request.read())
            review = check_review(body, webhook)
            fast = self.fast.get(webhook)
            if fast is not None:
                return aiohttp.web.json_response(fast(review))
            sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
            return aiohttp.web.json_response(await fn(body, webhook=webhook, sslpeer=sslpeer,
                                                      headers=dict(request.headers)))
        except MalformedReview as exc:
            endpoint = ENDPOINTS.get(webhook)
            self.metrics.admitted(endpoint.label if endpoint else "unknown", "malformed")
            if exc.uid is None:
                return aiohttp.web.json_response(http_status(exc.http, str(exc)), status=exc.http)
            return aiohttp.web.json_response(denial(exc.uid, str(exc)))
        finally:
            self._timers[webhook if webhook in ENDPOINTS else "unknown"].observe(time.perf_counter() - started)

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        async for client_config in super().__call__(fn):
            # kopf yields once its site has started: only now may the replica take webhook traffic
            if self.on_listening is not None:
                self.on_listening()
            yield client_config


class DiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base in an annotation, except for the kinds in ``watch_only``: none.

    kopf builds a diff base (a deep copy of the whole object, then a cleaned copy of that) for every
    event of every resource it watches, also where only ``on.event`` handlers watch and nothing reads
    it. For pods (address verification: an event for every pod of the cluster) that was a third of the
    active replica's CPU at 100 pod creates/s (py-spy; benchmarks/README.md), on the event loop that
    answers the webhooks. A kind listed here must have no on.create/update/delete or daemon handlers
    (they need the diff): ``handlers.WATCH_ONLY`` says which, and a test holds the registries to it."""

    def __init__(self, *, watch_only: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch_only = frozenset(watch_only)

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if body.get("kind") in self.watch_only:  # an object listed without its kind is built: only slower
            return None
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: Any) -> Any:
        return None if body.get("kind") in self.watch_only else super().fetch(body=body)


def operator_settings(*, watch_only: Iterable[str] = (), **overrides: Any) -> kopf.OperatorSettings:
    """kopf settings zonectl runs with: own annotation prefix and finalizer, quiet Events, no managed webhooks;
    no diff base for the kinds in ``watch_only`` (see ``DiffBaseStorage``)."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = "zonectl.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="zonectl.io")
    settings.persistence.diffbase_storage = DiffBaseStorage(prefix="zonectl.io", key="last-handled-configuration",
                                                            watch_only=watch_only)
    settings.posting.level = 30  # logging.WARNING: no "handler succeeded" Events; ours use kopf.event()
    settings.admission.managed = None  # the webhook configurations ship as manifests (see manifests/)
    settings.watching.server_timeout = 300
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


def offline_admission(registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings | None = None,
                      resources: Iterable[tuple[str, str, str, str, bool]] = WEBHOOK_RESOURCES) -> Any:
    """kopf's admission function for ``registry``, usable without an API server (tests, benchmarks)."""
    from kopf._cogs.structs import ephemera, references
    from kopf._core.engines import admission, indexing
    from kopf._core.reactor import inventory

    insights = references.Insights()
    for group, version, plural, kind, namespaced in resources:
        insights.webhook_resources.add(
            references.Resource(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced))
    return functools.partial(
        admission.serve_admission_request,
        settings=settings or operator_settings(),
        registry=registry,
        insights=insights,
        memories=inventory.ResourceMemories(),
        memobase=ephemera.AnyMemo(ephemera.Memo()),
        indices=indexing.OperatorIndexers().indices,
    )
