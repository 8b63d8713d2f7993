"""The published rules document of the example policies, and every way to change one of its fields.

Shared by the pure property (tests/unit/test_published_schema.py) and the same documents through a real
``zonectl gateway apply`` in a namespace (tests/netns/test_published_injection.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from docedits import at, mutated, paths
from zonectl.core import published
from zonectl.core.config import parse_config
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import load_documents, of_kind, read_mapping

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
CONFIG = parse_config(read_mapping(EX / "config.yaml"))
REGISTRY = ZoneRegistry.from_objects(CONFIG.layout, of_kind(load_documents([EX / "zones.yaml"]), "SecurityZone"))
RULES = compile_objects(of_kind(load_documents([EX / "policies.yaml"]), "SecurityZonePolicy"), REGISTRY, CONFIG.nat64)
BASE = published.document(RULES, REGISTRY, complete=True, keep=["zonectl-system/kept"])

INJECTIONS = ["x\n-A INPUT -s ::/0 -j ACCEPT", "443\n-A INPUT -j ACCEPT", "tcp\n-A FORWARD -j ACCEPT", "a b", 'a"b',
              "x\r\nCOMMIT", "} accept; chain x {", "ns/p\nmap 1.2.3.4 ::1", "fd00::/0", "::/0", "0.0.0.0/0",
              "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::\n", "fd00::%eth0/64", "r0044a035c957af1 ",
              "zonectl-system/dmz\n", "dmz\n", "allow\n", "egress ", "1e3", "0x50", "", "-1", "x" * 10_000, "ü",
              "$(reboot)", "#", ";", "\x00"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70) | st.floats()
           | st.text(max_size=30) | st.sampled_from(INJECTIONS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=6)
PATHS = sorted(set(paths(BASE)), key=repr)
FIELDS = [p for p in PATHS if not isinstance(at(BASE, p), (dict, list))]  # every scalar field of the document
STRUCTURE = [p for p in PATHS if isinstance(at(BASE, p), (dict, list))]  # the document, its objects and lists


def edited(path: tuple, value: Any) -> Any:
    return mutated(BASE, path, value)
