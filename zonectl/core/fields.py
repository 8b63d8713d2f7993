"""Readers for the fields of user documents: each checks one value's type and range, or records a problem.

Why one module: every parser (policy, zone, config sections) must refuse the same things the same way:
unknown keys (typos), values of the wrong type (a dict where a string belongs, ``true`` where a number
belongs, NaN, huge numbers), empty lists that would read as "everything", and text that could not be
written safely into a rendered file. A reader never raises anything but a problem in the Collector, so
a malformed document ends as a ValidationError naming the field, never as a Python exception.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from typing import Any, Callable, Iterable, Mapping, TypeVar

from .errors import Collector

T = TypeVar("T")
MISSING: Any = object()  # "the key is absent": distinct from an explicit null
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
MAX_TEXT = 1024


def keys_text(keys: Iterable[Any]) -> str:
    """Keys for a message, sorted; keys that are not strings (YAML allows ``1: x``) shown as written."""
    return ", ".join(sorted(k if isinstance(k, str) else repr(k) for k in keys))


def check_keys(body: Mapping[Any, Any], allowed: Iterable[str], path: str, errs: Collector) -> set[str] | None:
    """Unknown keys are typos: one problem at ``path`` naming them (and the key each probably meant).

    None if every key is known; else the known keys the typos probably meant (missing from ``body``), so
    that the caller does not also report "<the key meant> is required": one typo, one message.
    """
    allowed = set(allowed)
    unknown = [k for k in body if k not in allowed]
    if not unknown:
        return None
    meant: set[str] = set()
    hints = []
    for k in unknown:
        match = get_close_matches(k, sorted(allowed - set(body)), 1, 0.6) if isinstance(k, str) else []
        meant.update(match)
        hints.append(f"{k} (did you mean {match[0]}?)" if match else (k if isinstance(k, str) else repr(k)))
    errs.add(path, f"unknown field(s) {', '.join(sorted(hints))} (known: {keys_text(allowed)})")
    return meant


def mapping(value: Any, path: str, errs: Collector, allowed: Iterable[str] | None = None,
            what: str = "an object") -> Mapping[str, Any] | None:
    """``value`` as a mapping with only ``allowed`` keys, or None (one problem recorded)."""
    if not isinstance(value, Mapping):
        errs.add(path, f"must be {what}, not {type_name(value)}")
        return None
    if allowed is not None and check_keys(value, allowed, path, errs) is not None:
        return None  # one message for the object: its other fields are not read
    return value


def section(value: Any, path: str, errs: Collector, allowed: Iterable[str],
            source: str = "config") -> tuple[Mapping[str, Any], set[str]]:
    """A config section (null: empty): raises at once if it is not a mapping; else the section and the known
    keys that its unknown keys probably meant (recorded as one problem), so those are not also "required"."""
    body = {} if value is None else mapping(value, path, errs, what="a mapping")
    if body is None:
        errs.raise_if_any(source)
    assert body is not None
    return body, check_keys(body, allowed, path, errs) or set()


def optional_mapping(body: Mapping[str, Any], key: str, path: str, errs: Collector,
                     allowed: Iterable[str] | None = None) -> Mapping[str, Any]:
    """``body[key]`` as a mapping (a config sub-section): absent or null is an empty mapping, anything else
    not a mapping a problem; unknown keys are a problem, and the known ones are still read."""
    value = body.get(key)
    if value is None:
        return {}
    section = mapping(value, path, errs) or {}
    if allowed is not None:
        check_keys(section, allowed, path, errs)
    return section


# Kubernetes' ObjectMeta: a key of metadata not among these is a typo (``namspace: tenant`` would quietly
# put a policy in the default namespace), refused like any other unknown key.
OBJECT_META = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
               "ownerReferences", "finalizers", "managedFields")


def metadata(body: Mapping[str, Any], errs: Collector, what: str) -> Mapping[str, Any] | None:
    """An object's ``metadata``: ObjectMeta's keys only, and labels and annotations maps of strings."""
    meta = mapping(body.get("metadata"), "metadata", errs, OBJECT_META, what=what)
    for key in ("labels", "annotations"):
        value = (meta or {}).get(key)
        if value is not None and mapping(value, f"metadata.{key}", errs, what="a map of strings") is not None:
            bad = next((k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)), MISSING)
            if bad is not MISSING:
                errs.add(f"metadata.{key}", f"{short(bad)}: keys and values must be strings")
    return meta


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def short(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters: a message stays readable with a 1 MB input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def string(value: Any, path: str, errs: Collector, *, pattern: re.Pattern[str] | None = None,
           max_len: int = MAX_TEXT, what: str = "a string") -> str | None:
    """A string (printable, at most ``max_len``, matching ``pattern``), or None with a problem."""
    if not isinstance(value, str):
        errs.add(path, f"must be {what}, not {type_name(value)}")
        return None
    if len(value) > max_len:
        errs.add(path, f"is {len(value)} characters long (at most {max_len})")
        return None
    if pattern is not None and not pattern.fullmatch(value):
        errs.add(path, f"{short(value)} is not {what}")
        return None
    if pattern is None and not value.isprintable():
        errs.add(path, f"{short(value)} contains control characters (a newline, tab, ...)")
        return None
    return value


def name(value: Any, path: str, errs: Collector, what: str = "a DNS label") -> str | None:
    """A DNS label (RFC 1123): what zone, policy, rule and namespace names are."""
    return string(value, path, errs, pattern=DNS_LABEL, max_len=63,
                  what=f"{what} (lowercase letters, digits and '-', at most 63)")


def integer(value: Any, path: str, errs: Collector, lo: int, hi: int) -> int | None:
    """An integer from ``lo`` to ``hi``; booleans, floats and numeric strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        errs.add(path, f"{short(value)} must be an integer from {lo} to {hi}")
        return None
    return value


def number(value: Any, path: str, errs: Collector, lo: float, hi: float) -> float | None:
    """A finite number from ``lo`` to ``hi`` (NaN and infinities fail the range test)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        errs.add(path, f"{short(value)} must be a number from {lo:g} to {hi:g}")
        return None
    return float(value)


def boolean(value: Any, path: str, errs: Collector) -> bool | None:
    """``true`` or ``false`` only: the string "false" is not false."""
    if not isinstance(value, bool):
        errs.add(path, f"{short(value)} must be true or false")
        return None
    return value


def only_true(value: Any, path: str, errs: Collector) -> bool:
    """``any: true``: the one spelling of "everything"; ``false`` or anything else is refused."""
    if value is not True:
        errs.add(path, f"{short(value)} is not allowed: write `any: true` to mean every value, or leave it out")
        return False
    return True


def enum(value: Any, allowed: Mapping[str, T], path: str, errs: Collector) -> T | None:
    """One of ``allowed``'s keys (case-sensitive), mapped to its value."""
    if not isinstance(value, str) or value not in allowed:
        errs.add(path, f"{short(value)} is not one of {', '.join(allowed)}")
        return None
    return allowed[value]


def items(value: Any, path: str, errs: Collector, *, max_items: int, what: str = "a list",
          empty: str = "") -> list[Any]:
    """A non-empty list of at most ``max_items``; ``empty`` says what to write instead of ``[]``."""
    if not isinstance(value, list):
        errs.add(path, f"must be {what}, not {type_name(value)}")
        return []
    if not value:
        errs.add(path, "is empty" + (f": {empty}" if empty else ""))
        return []
    if len(value) > max_items:
        errs.add(path, f"has {len(value)} items (at most {max_items})")
        return []
    return value


ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f:./]{1,100}")  # no "%zone" suffix: ipaddress accepts one, a config line must not


def address(value: Any, path: str, errs: Collector, parse: Callable[[str], T], what: str) -> T | None:
    """An IP address or network parsed by ``parse`` (an ``ipaddress`` class), from a string of address characters."""
    text = string(value, path, errs, pattern=ADDRESS_CHARS, max_len=100, what=what)
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        errs.add(path, f"{short(text)} is not {what}: {exc}")
        return None
