"""kopf's webhook server with a latency histogram and a fast path, and kopf's admission engine offline.

``ZonectlWebhookServer`` is kopf's own ``WebhookServer`` (aiohttp, TLS, certificate reload). It wraps the
admission function kopf hands it to (1) time every review into ``zonectl_admission_duration_seconds`` and
(2) answer the hot pod webhook from a "fast path" function when one is given: the same decision as the
``@kopf.on.mutate`` handler, without kopf's whole-body deep copy and diff. Every other webhook, and any
review the fast path declines (returns None), goes through kopf's engine unchanged.

``offline_admission`` builds the very function ``kopf.operator()`` passes to its webhook server
(``serve_admission_request`` bound to a registry and settings), but with the resource list given
instead of discovered from an API server. Tests and ``benchmarks/admission.py`` use it to drive the real
server and engine with AdmissionReview bodies on a machine without Kubernetes. It reaches into kopf's
private modules, so it lives here, in one place, and is never used by the running controller.
"""

from __future__ import annotations

import functools
import time
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

import kopf

from .metrics import Metrics

# (group, version, plural, kind, namespaced) of every resource zonectl has webhooks for.
WEBHOOK_RESOURCES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("", "v1", "pods", "Pod", True),
    ("zonectl.io", "v1alpha1", "securityzonepolicies", "SecurityZonePolicy", True),
    ("zonectl.io", "v1alpha1", "securityzones", "SecurityZone", False),
)


FastPath = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]


class ZonectlWebhookServer(kopf.WebhookServer):
    """kopf.WebhookServer that times each review per webhook id, with optional per-webhook fast paths."""

    def __init__(self, *, metrics: Metrics, fast: Mapping[str, FastPath] | None = None,
                 on_listening: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.fast = dict(fast or {})
        self.on_listening = on_listening  # called once the socket accepts connections (readiness)

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        histogram = self.metrics.admission_seconds
        fast = self.fast
        children: dict[str, Any] = {}  # labelled histogram per webhook id, looked up once

        async def timed(request: Any, *, webhook: str | None = None, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                shortcut = fast.get(webhook or "")
                if shortcut is not None:
                    answer = shortcut(request)
                    if answer is not None:
                        return answer
                return await fn(request, webhook=webhook, **kwargs)
            finally:
                child = children.get(webhook or "")
                if child is None:
                    child = children[webhook or ""] = histogram.labels(webhook or "")
                child.observe(time.perf_counter() - started)

        async for client_config in super().__call__(timed):
            # kopf yields once its site has started: only now may the replica take webhook traffic
            if self.on_listening is not None:
                self.on_listening()
            yield client_config


def operator_settings(**overrides: Any) -> kopf.OperatorSettings:
    """kopf settings zonectl runs with: own annotation prefix and finalizer, quiet Events, no managed webhooks."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = "zonectl.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="zonectl.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="zonectl.io",
                                                                           key="last-handled-configuration")
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
