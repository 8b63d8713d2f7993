"""Issue 9, class 6: an OVN sync whose transaction was sent and got no answer says so, then reads NB again.

The sandbox's own NB ovsdb-server is stopped (SIGSTOP) or killed (SIGKILL) by the pid in its pidfile at
the moment that matters: in-process right after connecting, and for the real ``zonectl`` process through
``nbrelay.NbRelay``, which acts when the client's ``transact`` request passes through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbrelay import NbRelay
from zonectl.cli import main
from zonectl.ovn.connection import NbSettings, OvnError, connect
from zonectl.ovn.sync import OutcomeUnknown, sync
from zonectl.procs import wait_until

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
OWNED = "external_ids:k8s.ovn.org/owner-controller=zonectl"
EXEMPTIONS = 6  # 3 per node switch, 2 node switches


def owned(sb) -> list[str]:
    return sb.nbctl("--bare", "--columns=_uuid", "find", "ACL", OWNED).split()


def nb_pid(sb) -> int:
    return int(sb.path("nb.pid").read_text().strip())


def test_a_hung_nb_is_an_unknown_outcome_and_it_did_commit(lab) -> None:
    """SIGSTOP after connecting: the sync's transaction sits in the hung server's socket. zonectl gives up
    after its timeout and says "outcome unknown"; once the server runs again it commits that transaction,
    so "failed, NB unchanged" would have been false. A second sync queued behind it is abandoned, and is
    reported as not sent: it never writes, even when the server comes back."""
    want = len(lab.rules) + EXEMPTIONS
    with connect(NbSettings(lab.sb.nb_remote, timeout=2)) as nb:
        pid = nb_pid(lab.sb)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(OutcomeUnknown, match=f"transaction \\({want} changes\\) was sent and no answer came"):
                sync(nb, lab.rules, lab.settings)
            assert time.monotonic() - started < 6
            with pytest.raises(OvnError, match="nothing was sent, NB unchanged") as second:
                sync(nb, lab.rules.rules[:3], lab.settings)  # queued behind the first, never planned
            assert not isinstance(second.value, OutcomeUnknown)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: len(owned(lab.sb)) == want, 10, "the resumed server to commit what it had been sent")
        time.sleep(0.5)  # the abandoned second sync had its chance to run: it must not have written
        assert len(owned(lab.sb)) == want
        wait_until(lambda: sync(nb, lab.rules, lab.settings, mode="log").in_sync, 10, "the client to see NB as it is")


def _cli(remote: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "zonectl", "ovn", "sync", "--nb", remote, "--config", str(EX / "config.yaml"),
         "--zones", str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return proc.returncode, out, err


def test_cli_hung_after_send_reads_nb_again_and_reports_the_commit(lab) -> None:
    """The relay stops the server right after forwarding the transaction. zonectl says the outcome is unknown,
    reads NB again on a new connection, and once the server answers reports what is there: every change, exit 0."""
    with NbRelay(lab.sb.path("nb.sock"), lab.sb.path("nb.pid"), "stop") as relay:
        proc = _cli(relay.remote, "--timeout", "3")
        try:
            assert relay.acted.wait(20), "no transaction reached the relay"
            assert proc.stderr is not None
            line = proc.stderr.readline()  # the CLI's own words, before it reads NB again
            assert "outcome unknown" in line and "may or may not have applied it" in line and "reading NB again" in line, \
                (line, proc.poll(), proc.communicate(timeout=30) if not line else "")
        finally:
            assert relay.pid is not None
            os.kill(relay.pid, signal.SIGCONT)
        code, out, err = _finish(proc)
    assert code == 0, err
    assert "applied: 30 create" in out and "NB read again on a new connection holds every change" in out
    assert len(owned(lab.sb)) == 30


def test_cli_nb_killed_before_the_transaction_outcome_unknown_exit_3(lab) -> None:
    """The server dies as the transaction is sent and stays down: nothing can be read again, so the outcome stays
    unknown (exit 3, never "NB unchanged"); NB, back, shows the transaction never reached it."""
    with NbRelay(lab.sb.path("nb.sock"), lab.sb.path("nb.pid"), "kill-before") as relay:
        code, out, err = _finish(_cli(relay.remote, "--timeout", "2"))
    assert code == 3 and out == "", err
    last = err.strip().splitlines()[-1]
    assert last.startswith("zonectl: error: OVN NB sync outcome unknown") and "could not be read again" in last, err
    assert "NB unchanged" not in err and "Traceback" not in err
    lab.sb.kill_nb()  # reap the killed server, then start it again on its database
    lab.sb.start_nb()
    assert owned(lab.sb) == []


def test_cli_answer_lost_after_commit_reports_applied(lab) -> None:
    """The server commits, dies before its answer reaches zonectl, and comes back: the retry after the reconnect
    finds nothing left to do. That is reported as applied (with why), not as "nothing to do" or a failure."""
    with NbRelay(lab.sb.path("nb.sock"), lab.sb.path("nb.pid"), "kill-after") as relay:
        proc = _cli(relay.remote, "--timeout", "8")
        try:
            assert relay.acted.wait(20), "no transaction reached the relay"
            lab.sb.kill_nb()
            lab.sb.start_nb()
        finally:
            code, out, err = _finish(proc)
    assert code == 0, err
    assert "applied: 30 create" in out and "NB re-read on reconnect: it had applied it" in out, out
    assert len(owned(lab.sb)) == 30


def test_broken_pipe_after_a_write_is_not_an_error(lab) -> None:
    """`zonectl ovn sync ... | head -1`: the reader leaves before the output is written (`true` reads nothing, so
    the write always meets a closed pipe; `head -1` takes the first line). The sync was written, so exit 0 and
    nothing on stderr (no BrokenPipeError traceback, no "Exception ignored" at exit)."""
    base = (f"{sys.executable} -m zonectl ovn sync --nb {lab.sb.nb_remote} --config {EX / 'config.yaml'} "
            f"--zones {EX / 'zones.yaml'} -f {EX / 'policies.yaml'}")
    for reader, rows in (("true", 30), ("head -1", 30)):
        if reader == "head -1":
            # out of sync again, so that there is something to write
            assert main(["ovn", "sync", "--nb", lab.sb.nb_remote, "--config", str(EX / "config.yaml"), "--allow-empty"]) == 0
            assert owned(lab.sb) == []
        cmd = f"{base} 2>{lab.sb.path('err.txt')} | {reader}; echo \"status=${{PIPESTATUS[0]}}\""
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # the harder case: the gone
        # reader is met by the last flush, after the command has returned
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=60, env=buffered)
        lines = proc.stdout.splitlines()
        assert lines[-1] == "status=0", (reader, proc.stdout, lab.sb.path("err.txt").read_text())
        assert lab.sb.path("err.txt").read_text() == "", reader
        if reader == "head -1":
            assert lines[0].startswith("ovn sync (repair): applied: 30 create")
        assert len(owned(lab.sb)) == rows
