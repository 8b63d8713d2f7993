"""What an installed Tayga is and what it wrote: its version, its dynamic.map (read-only, no process).

Kept apart from the supervisor (``tayga.py``) because ``gateway status``, ``doctor`` and the lab read
them without running anything.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ..core.errors import ZonectlError
from ..render.tayga import DEBIAN_12, TaygaVersion
from .host import Host

log = logging.getLogger(__name__)

MIN_LEASE_S = 7200 + 4 * 60  # Tayga keeps a dynamic mapping usable this long after its last packet


class TaygaError(ZonectlError):
    """Tayga refused a config or would not start; the message carries Tayga's own words."""


# --- version -------------------------------------------------------------------------------------

_HELP_RE = re.compile(r"TAYGA version (\d+\.\d+(?:\.\d+)?)")
_BIN_RE = re.compile(rb"(?:starting TAYGA |TAYGA version )(\d+\.\d+\.\d+)")
_BIN_VERSION_RE = re.compile(rb"\x00(0\.9\.\d+)(?:-[0-9A-Za-z.~+-]+)?\x00")


def detect_version(binary: str = "tayga", host: Host | None = None) -> TaygaVersion:
    """The installed Tayga's version: ``--help`` names it from 0.9.4 on; 0.9.2 only has it in its binary."""
    host = host or Host()
    proc = host.run([binary, "--help"], check=False, timeout=10)
    m = _HELP_RE.search(proc.stdout + proc.stderr)
    if m:
        return TaygaVersion.parse(m[1])
    path = shutil.which(binary)
    if path is None:
        raise TaygaError(f"{binary}: not found (install the tayga package)")
    data = Path(path).read_bytes()
    m2 = _BIN_RE.search(data) or _BIN_VERSION_RE.search(data)
    if m2:
        return TaygaVersion.parse(m2[1].decode())
    log.warning("cannot tell the version of %s; assuming %s (the oldest supported)", path, DEBIAN_12)
    return DEBIAN_12


# --- dynamic.map ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicMapping:
    ipv4: IPv4Address
    ipv6: IPv6Address
    last_use: int  # unix time of the last translated packet (as of Tayga's last write)


def parse_dynamic_map(text: str) -> list[DynamicMapping]:
    """Entries of a dynamic.map (``IPv4<TAB>IPv6<TAB>last-use``); comments and malformed lines skipped."""
    out: list[DynamicMapping] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 3 or words[0].startswith("#"):
            continue
        try:
            out.append(DynamicMapping(IPv4Address(words[0]), IPv6Address(words[1]), int(words[2])))
        except ValueError:
            continue
    return out


def read_dynamic_map(data_dir: Path) -> list[DynamicMapping]:
    try:
        return parse_dynamic_map((data_dir / "dynamic.map").read_text())
    except FileNotFoundError:
        return []


def active_mappings(entries: list[DynamicMapping], now: float | None = None) -> int:
    """Mappings still inside Tayga's guaranteed lease (the rest are dormant and may be reused)."""
    now = time.time() if now is None else now
    return sum(1 for e in entries if now - e.last_use <= MIN_LEASE_S)
