"""Documents read from outside the process, parsed strictly: bytes -> text -> YAML or JSON values.

Why not ``yaml.safe_load`` / ``json.loads``: PyYAML keeps the last of two equal keys (a duplicated
``action:`` silently wins), expands aliases (a few hundred bytes can stand for a billion nodes, the
"billion laughs"), and composes nested collections recursively (a deep document is a RecursionError in
Python and a crash in libyaml); ``json.loads`` also keeps the last duplicate and accepts NaN and
Infinity. The readers here refuse each of those with a ValidationError that names the line, so a file
can only mean what it says, and a hostile one ends as one message, never as a traceback.

Pure: bytes or text in, plain Python values out. The files themselves are read in ``zonectl.inputs``.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode
from yaml.resolver import Resolver

from .errors import ValidationError

try:  # libyaml's parser (events), under the composer below in Python: it is where depth and aliases are counted
    from yaml._yaml import CParser

    _PARSING: tuple[type, ...] = (CParser,)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    _PARSING = (Reader, Scanner, Parser)

MAX_DEPTH = 100  # nested collections; Kubernetes objects (managedFields included) stay far below
MERGE_TAG = "tag:yaml.org,2002:merge"
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(data: bytes) -> str:
    """UTF-8 text (a UTF-8 byte order mark is dropped); binary, UTF-16/32 and invalid UTF-8 are refused."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise ValidationError(f"is {name} text (byte order mark): save it as UTF-8")
    if b"\0" in data:
        raise ValidationError(f"is a binary file (a NUL byte at offset {data.index(0)}), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def _where(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what, and where (line and column counted from 1)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, (exc.context, exc.problem))) or "invalid YAML"
        if "maximum nesting depth" in what:  # libyaml >= 0.2.5 scans ahead and may stop first (at 1,000)
            what = f"nested deeper than {MAX_DEPTH} levels"
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else what
    return str(exc)


class StrictLoader(Composer, *_PARSING, SafeConstructor, Resolver):  # type: ignore[misc]
    """PyYAML's safe loader, refusing duplicate keys, deep nesting and alias expansion beyond a budget.

    The composer is PyYAML's Python one (over libyaml's events when available), so that depth and the
    expanded size of every alias are counted as the document is composed, before any of it is built."""

    def __init__(self, stream: str, budget: int) -> None:
        _PARSING[0].__init__(self, stream)  # type: ignore[misc]  # CParser(stream), or Reader(stream) ...
        for cls in _PARSING[1:]:  # pragma: no cover - ... Scanner(), Parser() in pure-Python PyYAML
            cls.__init__(self)  # type: ignore[misc]
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.budget = budget  # nodes the document may stand for, aliases expanded
        self.expanded = 0
        self.depth = 0
        self.sizes: dict[str, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._count(self.sizes.get(event.anchor or "", 1), event)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
        start = self.expanded
        self._count(1, event)
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[event.anchor] = self.expanded - start
        return node

    def _count(self, nodes: int, event: Any) -> None:
        self.expanded += nodes
        if self.expanded > self.budget:
            raise yaml.MarkedYAMLError(problem=f"stands for more than {self.budget} values once its aliases are "
                                               "expanded (an alias bomb?)", problem_mark=event.start_mark)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue  # `<<: *base` then a key of its own is an override, not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: the base class refuses it with its own message
                if duplicate:
                    raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_documents(text: str) -> list[Any]:
    """Every document of a YAML stream (empty ones as None), or a ValidationError naming the line."""
    loader = StrictLoader(text, budget=10 * len(text) + 10_000)  # no alias-free text comes near it
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs
    except yaml.YAMLError as exc:
        raise ValidationError(_where(exc)) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise ValidationError(_invalid(exc)) from None
    finally:
        loader.dispose()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValidationError(f"{name} is not a number JSON allows")


def json_document(text: str) -> Any:
    """One JSON value: duplicate keys, NaN and Infinity refused; a deep or malformed text is one message."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ValidationError("nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of 5,000 digits
        raise ValidationError(_invalid(exc)) from None


def _invalid(exc: BaseException) -> str:
    return f"invalid value: {str(exc).split(';')[0]}"
