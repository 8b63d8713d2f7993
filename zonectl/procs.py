"""Process helpers shared by the daemons' supervisors, the lab and the test harness: one of each.

Why by pid and ``/proc``: zonectl only ever ends processes it started itself (its own Tayga, its own
sandbox daemons), so every helper works on a pid it recorded, never on a process name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path
from typing import Callable


class WaitTimeout(TimeoutError):
    """``wait_until`` gave up; the message says what it was waiting for."""


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (detached daemons may be reparented to a non-reaping init)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The process' command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def become_subreaper() -> None:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER), so the ``--detach``ed daemons we kill get reaped.

    Without it they are reparented to this machine's init, which does not reap: zombies pile up.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap(pid: int, timeout: float = 5.0) -> None:
    """Collect a dead child's exit status. A multi-threaded leader shows as a zombie before its last
    thread is gone, and waitpid() only succeeds after that, so poll for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (or already reaped)
        if done == pid or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def kill_pid(pid: int, *, timeout: float = 5.0) -> bool:
    """SIGTERM, wait, then SIGKILL one process by its pid (and reap it if it is our child).

    True if the process was alive when called."""
    if not alive(pid):
        reap(pid, timeout=0)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not alive(pid):
            break
    reap(pid)
    return True


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``pred`` until it is truthy; ``WaitTimeout`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
