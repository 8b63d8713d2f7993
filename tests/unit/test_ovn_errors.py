"""OVN errors stay short enough for a status condition or an Event, and keep the cause."""

from __future__ import annotations

from zonectl.ovn.connection import brief


class TimeoutException(Exception):
    pass


def test_cause_is_kept_and_command_list_dropped() -> None:
    commands = ", ".join(f"AddCommand(row={i}, match='ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::')" for i in range(500))
    exc = TimeoutException(f"Commands [{commands}] exceeded timeout 10 seconds, cause: Result queue is empty")
    assert brief(exc) == "TimeoutException: Result queue is empty"
    long_no_cause = RuntimeError(f"Commands [{commands}] failed: OVSDB Error: constraint violation")
    assert brief(long_no_cause) == "RuntimeError: failed: OVSDB Error: constraint violation"


def test_short_messages_untouched_and_long_ones_cut() -> None:
    assert brief(RuntimeError("OVSDB Error: referential integrity violation")) == "OVSDB Error: referential integrity violation"
    assert brief(RuntimeError()) == "RuntimeError"
    cut = brief(RuntimeError("x" * 1000))
    assert len(cut) == 300 and cut.endswith("…")
