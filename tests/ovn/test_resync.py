"""Drift repair in the background: a row deleted behind zonectl's back comes back within seconds."""

from __future__ import annotations

import time

from zonectl.core.errors import ValidationError
from zonectl.ovn.resync import Resyncer

OWNED = "external_ids:k8s.ovn.org/owner-controller=zonectl"


def _owned(lab) -> list[str]:
    return lab.sb.nbctl("--bare", "--columns=_uuid", "find", "ACL", OWNED).split()


def _wait(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_deleted_row_comes_back_and_bad_rules_keep_the_last_good_rows(lab) -> None:
    state = {"rules": lab.rules}

    def rules():
        if isinstance(state["rules"], Exception):
            raise state["rules"]
        return state["rules"]

    with Resyncer(lab.nb, rules, lab.settings, interval=60, min_gap=0.1) as resyncer:
        assert _wait(lambda: len(_owned(lab)) == len(lab.rules) + 6)
        victim = _owned(lab)[0]
        for sw in ("node1", "node2"):
            lab.sb.nbctl("--if-exists", "remove", "Logical_Switch", sw, "acls", victim)
        assert _wait(lambda: len(_owned(lab)) == len(lab.rules) + 6), "the deleted row was not recreated"
        assert victim not in _owned(lab)  # a new row with the same key
        rounds = resyncer.rounds
        state["rules"] = ValidationError("spec.egress[0].to[0].zone: unknown zone 'nope'")
        resyncer.trigger()
        assert _wait(lambda: resyncer.rounds > rounds and resyncer.last_error is not None)
        assert "unknown zone" in resyncer.last_error
        assert len(_owned(lab)) == len(lab.rules) + 6  # fail closed: the last good rows stay


def test_a_stopping_loop_repairs_nothing(lab) -> None:
    """A replica shutting down stops its drift loop first: rows the next leader deletes meanwhile stay deleted
    (the loop's stale rule set would otherwise put them back: zonectl/operator/run.py ``stop_drift_first``)."""
    with Resyncer(lab.nb, lambda: lab.rules, lab.settings, interval=60, min_gap=0.1) as resyncer:
        assert _wait(lambda: len(_owned(lab)) == len(lab.rules) + 6)
        resyncer.stop(wait=False)
        rounds = resyncer.rounds
        victim = _owned(lab)[0]
        for sw in ("node1", "node2"):
            lab.sb.nbctl("--if-exists", "remove", "Logical_Switch", sw, "acls", victim)
        assert resyncer.run_once() is None and resyncer.rounds == rounds
        time.sleep(1.0)  # what the running loop would have taken to see the change (min_gap 0.1 s)
        assert len(_owned(lab)) == len(lab.rules) + 5 and victim not in _owned(lab)
