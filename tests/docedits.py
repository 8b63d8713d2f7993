"""Every place in a document, and the document with one place changed: what the property tests vary.

Shared by the model properties (policy, zone, config: tests/unit/test_model_properties.py) and the
published rules document (tests/published_docs.py, for the pure and the namespace tests).
"""

from __future__ import annotations

import copy
from typing import Any

DELETE: Any = object()  # as a value: remove the key


def paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a document: each value (to replace) and each object (to add a key to)."""
    out = [path]
    if isinstance(node, dict):
        out += [p for k, v in node.items() for p in paths(v, path + (k,))]
    elif isinstance(node, list):
        out += [p for i, v in enumerate(node) for p in paths(v, path + (i,))]
    return out


def at(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def mutated(doc: Any, path: tuple, value: Any, add_key: Any = None) -> Any:
    """``doc`` with ``value`` at ``path`` (the whole document for ``()``; DELETE removes the key), or, when
    ``add_key`` is given and the place is an object, with ``value`` under that extra key."""
    doc = copy.deepcopy(doc)
    if not path:
        return value
    node = at(doc, path[:-1])
    if add_key is not None and isinstance(node[path[-1]], dict):
        node[path[-1]][add_key] = value
    elif value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc
