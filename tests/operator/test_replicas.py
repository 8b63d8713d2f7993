"""What lets several controller replicas run side by side: distinct kopf peering priorities (kopf pauses
every operator on a tie) and readiness that waits for the webhook socket (the Service must not send
reviews to a replica that refuses connections). The kube layer shows both against a real cluster."""

from __future__ import annotations

import asyncio
import socket

from opkit import run
from zonectl.operator.metrics import Metrics
from zonectl.operator.run import peering_priority
from zonectl.operator.webhook import ZonectlWebhookServer


def test_older_replica_leads_and_replicas_never_tie() -> None:
    started = [1_790_000_000_000_000 + i for i in (0, 1, 5_000_000)]
    priorities = [peering_priority(0, t) for t in started]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == 3
    assert peering_priority(1, started[-1]) > peering_priority(0, started[0])  # the configured value still rules
    assert peering_priority(-1, started[0]) < peering_priority(0, started[-1])


def test_readiness_is_signalled_once_the_socket_accepts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen: list[bool] = []

    def listening() -> None:
        with socket.socket() as c:
            seen.append(c.connect_ex(("127.0.0.1", port)) == 0)

    async def go() -> None:
        server = ZonectlWebhookServer(addr="127.0.0.1", port=port, insecure=True, metrics=Metrics(), on_listening=listening)

        async def answer(request, **_):
            return {}

        gen = server(answer)
        await asyncio.wait_for(gen.__anext__(), 10)
        await gen.aclose()

    run(go())
    assert seen == [True]


def test_per_request_logs_stay_quiet_unless_verbose() -> None:
    import logging

    from zonectl.operator.run import configure_logging

    loggers = [logging.getLogger(n) for n in ("aiohttp.access", "kopf.objects")]
    saved = [lg.level for lg in loggers]
    try:
        configure_logging("json", verbose=False)
        assert not any(lg.isEnabledFor(logging.INFO) for lg in loggers)
        assert all(lg.isEnabledFor(logging.WARNING) for lg in loggers)
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)
