"""Errors that name the field path and the reason, so a user can fix the input in one go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NoReturn, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a dotted path such as ``spec.egress[0].ports[1].port``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        text = f"{self.path}: {self.reason}" if self.path else self.reason
        return one_line(text)


def one_line(text: str) -> str:
    """``text`` with control characters escaped: an error message is one line, whatever the input held."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ZonectlError(Exception):
    """Base of every error zonectl raises on purpose."""


class ValidationError(ZonectlError):
    """Invalid input; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem] | str, *, source: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(one_line(head) + "; ".join(str(p) for p in self.problems))

    def attributed(self) -> tuple[Problem, ...]:
        """The problems with this error's source folded into each path, for merging into a larger report."""
        if not self.source:
            return self.problems
        return tuple(Problem(f"{self.source}: {p.path}" if p.path else self.source, p.reason) for p in self.problems)

    def prefixed(self, source: str) -> "ValidationError":
        """The same problems, attributed to an object (e.g. ``SecurityZonePolicy web/allow-https``)."""
        return ValidationError(self.problems, source=source)


def parse_each(items: Iterable[Any], parse: Callable[[Any], T], source: str) -> list[T]:
    """Every item parsed, or one error with every item's problems: none is skipped, the user sees them all."""
    out: list[T] = []
    problems: list[Problem] = []
    for item in items:
        try:
            out.append(parse(item))
        except ValidationError as exc:
            problems.extend(exc.attributed())
    if problems:
        raise ValidationError(problems, source=source)
    return out


class Collector:
    """Gathers problems while validating, so one pass reports all of them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))

    def extend(self, err: ValidationError, prefix: str = "") -> None:
        for p in err.problems:
            path = f"{prefix}.{p.path}" if prefix and p.path else (prefix or p.path)
            self.problems.append(Problem(path, p.reason))

    def section(self, body: Mapping[str, Any], key: str, path: str, allowed: Iterable[str]) -> Mapping[str, Any]:
        """``body[key]`` as a mapping (empty if absent); a non-mapping or unknown keys are problems at ``path``."""
        value = body.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, "must be a mapping")
            return {}
        allowed = set(allowed)
        unknown = sorted(k if isinstance(k, str) else repr(k) for k in value if k not in allowed)
        if unknown:
            self.add(path, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
        return value

    def raise_if_any(self, source: str = "") -> None:
        if self.problems:
            raise ValidationError(self.problems, source=source)

    def raise_now(self, path: str, reason: str, source: str = "") -> NoReturn:
        """Add one more problem and raise with everything found so far: for a problem nothing after it can
        be checked without (e.g. ``spec`` is not a mapping)."""
        self.add(path, reason)
        raise ValidationError(self.problems, source=source)
