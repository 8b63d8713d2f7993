"""The published rules document of the example policies, and every way to change one of its fields.

Shared by the pure property (tests/unit/test_published_schema.py) and the same documents through a real
``zonectl gateway apply`` in a namespace (tests/netns/test_published_injection.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

from hypothesis import strategies as st

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
DELETE = object()


def at(path: tuple) -> Any:
    node: Any = BASE
    for k in path:
        node = node[k]
    return node


def paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every position in the document: the root, every key of every object, every item of every list."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


PATHS = sorted(set(paths(BASE)), key=repr)
FIELDS = [p for p in PATHS if not isinstance(at(p), (dict, list))]  # every scalar field of the document
STRUCTURE = [p for p in PATHS if isinstance(at(p), (dict, list))]  # the document, its objects and lists


def edited(path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(BASE)
    if not path:
        return value
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc
