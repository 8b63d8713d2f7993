"""Periodic and on-demand drift repair: keep zonectl's NB rows equal to the rules, in a thread.

Why a thread that also watches the IDL: an ACL deleted or edited behind zonectl's back should come back
within seconds, not at the next period. The loop syncs when the NB cache changes (at most once per
``min_gap`` seconds: OVN-K's pod churn changes NB all the time, and a sync with nothing to do is a cheap
read of the cache that sends nothing), every ``interval`` seconds, and whenever ``trigger()`` is called.
A round that fails (inputs do not compile, NB unreachable) is logged and kept in ``last_error``; NB keeps
its last good rows (fail closed).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from zonectl.core.errors import ZonectlError
from zonectl.core.rules import Rule

from .connection import NbClient
from .sync import SyncMode, SyncReport, SyncSettings, sync

LOG = logging.getLogger(__name__)


class Resyncer:
    def __init__(self, nb: NbClient, rules: Callable[[], Iterable[Rule]], settings: SyncSettings, *,
                 mode: SyncMode = "repair", interval: float = 60.0, min_gap: float = 1.0,
                 watch: bool = True, on_report: Callable[[SyncReport], None] | None = None) -> None:
        self.nb = nb
        self.rules = rules
        self.settings = settings
        self.mode = mode
        self.interval = interval
        self.min_gap = min_gap
        self.watch = watch
        self.on_report = on_report
        self.rounds = 0
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> SyncReport | None:
        """One sync round now (in the caller's thread)."""
        self.rounds += 1
        try:
            report = sync(self.nb, self.rules(), self.settings, mode=self.mode)
        except ZonectlError as exc:
            self.last_error = str(exc)
            LOG.error("ovn resync failed, NB left as it was: %s", exc)
            return None
        self.last_error = None
        self.last_report = report
        if report.changes:
            for line in report.lines():
                LOG.warning("ovn drift %s", line)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def trigger(self) -> None:
        """Ask for a round as soon as possible (e.g. a policy changed)."""
        self._wake.set()

    def start(self) -> "Resyncer":
        if self.mode == "off":
            return self
        self._thread = threading.Thread(target=self._loop, name="zonectl-ovn-resync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.nb.settings.timeout + 5)

    def __enter__(self) -> "Resyncer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            seqno = self.nb.idl.change_seqno  # our own write bumps it; the next check sees a settled cache
            started = time.monotonic()
            if self._stop.wait(self.min_gap):
                return
            while not self._stop.is_set():
                if self._wake.is_set():
                    self._wake.clear()
                    break
                if self.watch and self.nb.idl.change_seqno != seqno:
                    break
                if time.monotonic() - started >= self.interval:
                    break
                self._wake.wait(0.1)
