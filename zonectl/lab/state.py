"""The lab's ledger: every namespace, process and file it makes, written down before it is made.

Why a ledger: ``lab up`` and ``lab down`` are separate processes, and ``up`` must clean up after a
run that crashed half-way. Each resource is recorded (and the file synced) *before* it is created,
so a crash can leave a recorded name that does not exist (harmless: teardown skips it) but never an
object nobody knows about. Teardown ends processes by pid only after checking the pid still runs
the program that was recorded (pids are reused), and deletes only names on the ledger.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import zonectl

from ..core.errors import ZonectlError
from ..harness.netns import kill_netns_pids, list_netns, remove_etc, run
from ..procs import alive, cmdline, kill_pid

STATE_FILE = "lab.json"
LEDGER_VERSION = 1


def daemon_main(description: str, serve: Callable[[Path], int], argv: list[str] | None = None) -> int:
    """The command line of the lab's daemons (gateway, control plane): ``--state-dir DIR``, logs to stderr."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(Path(args.state_dir))


class LabError(ZonectlError):
    """The lab cannot do what was asked; the message says why and what to do."""


@dataclass
class ProcessRecord:
    pid: int
    program: str  # a word the process' command line must contain for the pid to still be ours
    what: str


@dataclass
class LabState:
    """Everything one lab made, persisted in ``<state_dir>/lab.json``."""

    state_dir: Path
    lab_id: str = ""
    netns: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    ovn_dir: str = ""
    created_dir: bool = False
    phase: str = "new"  # new -> building -> up
    kube: bool = False  # a Kubernetes control plane with the zonectl controller (lab/kube.py) writes the policies
    inputs: dict[str, str] = field(default_factory=dict)  # config/zones/policies paths
    topology: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    def save(self) -> None:
        """Atomically replace the ledger (write, fsync, rename)."""
        body = asdict(self)
        body["state_dir"] = str(self.state_dir)
        body["version"] = LEDGER_VERSION
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(body, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, state_dir: Path) -> "LabState | None":
        path = Path(state_dir) / STATE_FILE
        if not path.exists():
            return None
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"{path}: unreadable lab ledger ({exc}); remove the directory by hand") from None
        if body.get("version") != LEDGER_VERSION:
            raise LabError(f"{path}: ledger version {body.get('version')!r}, expected {LEDGER_VERSION}")
        return cls(
            state_dir=Path(state_dir),
            lab_id=body.get("lab_id", ""),
            netns=list(body.get("netns") or []),
            processes=[ProcessRecord(**p) for p in body.get("processes") or []],
            ovn_dir=body.get("ovn_dir", ""),
            created_dir=bool(body.get("created_dir")),
            phase=body.get("phase", "new"),
            kube=bool(body.get("kube")),
            inputs=dict(body.get("inputs") or {}),
            topology=dict(body.get("topology") or {}),
            started=float(body.get("started") or 0),
        )

    # --- recording (always before creating) -----------------------------------------------------

    def will_create_netns(self, name: str) -> None:
        if name not in self.netns:
            self.netns.append(name)
            self.save()

    def started_process(self, pid: int, program: str, what: str) -> None:
        self.processes.append(ProcessRecord(pid, program, what))
        self.save()

    def spawn_daemon(self, module: str, what: str, log: str, prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """``python -m module --state-dir DIR`` in a session of its own (``prefix``: e.g. ``ip netns exec NS``),
        its output in logs/<log>, on the ledger; this source tree importable, as under ``lab up``."""
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])))
        with open(logs / log, "ab") as out:
            proc = subprocess.Popen([*prefix, sys.executable, "-m", module, "--state-dir", str(self.state_dir)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        self.started_process(proc.pid, module, what)
        return proc


PACKAGE_ROOT = Path(zonectl.__file__).resolve().parents[1]  # the source tree the lab's daemons import

# Daemons that need longer than a few seconds to end what they started (the control plane's daemon
# stops the controller, scheduler, controller-manager, API server and etcd, one after the other).
STOP_TIMEOUTS = {"zonectl.lab.kube": 90.0}


def stop_process(rec: ProcessRecord, timeout: float = 5.0) -> bool:
    """SIGTERM then SIGKILL ``rec.pid`` if it still runs ``rec.program``; True if it was ours and ran."""
    if not alive(rec.pid) or rec.program not in cmdline(rec.pid):
        return False
    return kill_pid(rec.pid, timeout=STOP_TIMEOUTS.get(rec.program, timeout))


def teardown(state: LabState) -> list[str]:
    """Remove everything on the ledger (whatever phase the lab reached); returns what was removed.

    Order: our processes (by pid), the OVN sandbox (its own pidfiles and namespace), the namespaces
    (deleting a namespace deletes every link inside it, and each veth's peer with it), then the files.
    """
    from ..harness.sandbox import OvnSandbox  # the sandbox owns its daemons' cleanup
    from .kube import leftovers  # what a killed control-plane daemon could not end

    removed: list[str] = []
    for rec in reversed(state.processes):
        if stop_process(rec):
            removed.append(f"process {rec.pid} ({rec.what})")
    removed += leftovers(state.state_dir)
    if state.ovn_dir and Path(state.ovn_dir).exists():
        sandbox = OvnSandbox(state_dir=Path(state.ovn_dir), chassis=True)
        sandbox.cleanup_stale()
        removed.append(f"ovn sandbox {state.ovn_dir}")
    present = set(list_netns())
    for name in reversed(state.netns):
        if name in present:
            kill_netns_pids(name)
            run(["ip", "netns", "delete", name], check=False)
            removed.append(f"netns {name}")
        remove_etc(name)  # its resolv.conf under /etc/netns
    if state.created_dir:
        shutil.rmtree(state.state_dir, ignore_errors=True)
    else:
        for child in ("ovn", "gateway", "dns", "kube", "logs", "matrix.svg", "matrix.html", "lab-policies.yaml",
                      STATE_FILE):
            p = state.state_dir / child
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    removed.append(f"state {state.state_dir}")
    return removed
