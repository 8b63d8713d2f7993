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
from typing import Callable, Iterable, Self

from zonectl.core.errors import ZonectlError
from zonectl.core.rules import Rule

from .connection import NbClient
from .sync import SyncMode, SyncReport, SyncSettings, sync
from .watch import NbWatchLoop

LOG = logging.getLogger(__name__)


class Resyncer(NbWatchLoop):
    thread_name = "zonectl-ovn-resync"

    def __init__(self, nb: NbClient, rules: Callable[[], Iterable[Rule]], settings: SyncSettings, *,
                 mode: SyncMode = "repair", interval: float = 60.0, min_gap: float = 1.0,
                 watch: bool = True, on_report: Callable[[SyncReport], None] | None = None) -> None:
        super().__init__(nb, interval=interval, min_gap=min_gap, watch=watch, poll=0.1)
        self.rules = rules
        self.settings = settings
        self.mode = mode
        self.on_report = on_report
        self.rounds = 0
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None

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

    def start(self) -> Self:
        if self.mode == "off":
            return self
        return super().start()
