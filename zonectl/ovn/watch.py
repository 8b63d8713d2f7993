"""A background loop over the NB cache: do a round, then wait for the next reason to do another.

Reasons: the IDL cache changed (``change_seqno`` moved: someone wrote to NB), ``trigger()`` was called,
or ``interval`` seconds passed. ``min_gap`` spaces rounds out (OVN-K's pod churn changes NB all the
time). Polling ``change_seqno`` is cheap and needs no hook in the IDL thread. Shared by the drift
repair (``resync.Resyncer``) and the SNAT guard (``snat.SnatGuard``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Self

from .connection import NbClient


class NbWatchLoop:
    """Subclasses implement ``run_once()``; ``start()``/``stop()``, or use as a context manager."""

    thread_name = "zonectl-ovn-watch"

    def __init__(self, nb: NbClient, *, interval: float, min_gap: float = 0.0, watch: bool = True,
                 poll: float = 0.05) -> None:
        self.nb = nb
        self.interval = interval
        self.min_gap = min_gap
        self.watch = watch
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        """One round now (in the caller's thread)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """The loop's thread is alive (a hung or crashed loop makes a daemon unhealthy)."""
        return self._thread is not None and self._thread.is_alive()

    def trigger(self) -> None:
        """Ask for a round as soon as possible (e.g. a policy changed)."""
        self._wake.set()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, wait: bool = True) -> None:
        """End the loop; ``wait=False`` only says so (no new round starts) without waiting for its thread."""
        self._stop.set()
        self._wake.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=self.nb.settings.timeout + 5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            seqno = self.nb.idl.change_seqno  # our own write bumps it; the next check sees a settled cache
            started = time.monotonic()
            if self.min_gap and self._stop.wait(self.min_gap):
                return
            while not self._stop.is_set():
                if self._wake.is_set():
                    self._wake.clear()
                    break
                if self.watch and self.nb.idl.change_seqno != seqno:
                    break
                if time.monotonic() - started >= self.interval:
                    break
                self._wake.wait(self.poll)
