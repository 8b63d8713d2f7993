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
from typing import Callable, Collection, Iterable, Self

from zonectl.core.errors import ZonectlError
from zonectl.core.rules import Rule

from .connection import NbClient
from .sync import OutcomeUnknown, SyncMode, SyncReport, SyncSettings, sync
from .watch import NbWatchLoop

LOG = logging.getLogger(__name__)


class Resyncer(NbWatchLoop):
    """The one NB drift loop: ``zonectl ovn run``, and the node agent (which feeds it the published rules).

    ``rules()`` returns the complete rule set to enforce, or None when there is nothing to enforce yet (the
    agent before its first usable document: nothing is written); ``keep()`` the policies whose rows stay as
    they are. ``on_report``/``on_error`` see every round's outcome; without ``on_report`` every change a
    round made is logged as drift.
    """

    thread_name = "zonectl-ovn-resync"

    def __init__(self, nb: NbClient, rules: Callable[[], Iterable[Rule] | None], settings: SyncSettings, *,
                 mode: SyncMode = "repair", interval: float = 60.0, min_gap: float = 1.0, watch: bool = True,
                 keep: Callable[[], Collection[str]] = frozenset,
                 on_report: Callable[[SyncReport], None] | None = None,
                 on_error: Callable[[str], None] | None = None, lock: threading.Lock | None = None) -> None:
        super().__init__(nb, interval=interval, min_gap=min_gap, watch=watch, poll=0.1)
        self.rules = rules
        self.settings = settings
        self.mode = mode
        self.keep = keep
        self.on_report = on_report
        self.on_error = on_error
        self.lock = lock  # held for a round: shared with another writer of the same rows (the controller's backend)
        self.rounds = 0
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None

    def run_once(self) -> SyncReport | None:
        """One sync round now (in the caller's thread)."""
        if self.lock is None:
            return self._round()
        with self.lock:
            return self._round()

    def _round(self) -> SyncReport | None:
        if self.stopping:  # a replica shutting down: the next leader may already be writing other rows
            return None
        self.rounds += 1
        try:
            rules = self.rules()
            if rules is None:
                return None
            report = sync(self.nb, rules, self.settings, mode=self.mode, keep_policies=self.keep())
        except ZonectlError as exc:
            repeated = str(exc) == self.last_error
            self.last_error = str(exc)
            if isinstance(exc, OutcomeUnknown):  # sent, no answer: the next round plans on NB as it is then
                LOG.warning("%s; the next round reads NB again and repairs", exc)
            else:  # a refused plan (e.g. no node switch yet) is logged once, not on every NB change
                LOG.log(logging.DEBUG if repeated else logging.ERROR, "ovn sync failed, NB left as it was: %s", exc)
            if self.on_error is not None:
                self.on_error(self.last_error)
            return None
        self.last_error = None
        self.last_report = report
        if self.on_report is not None:
            self.on_report(report)
        elif report.changes:
            for line in report.lines():
                LOG.warning("ovn drift %s", line)
        return report

    def start(self) -> Self:
        if self.mode == "off":
            return self
        return super().start()
