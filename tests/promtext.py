"""Prometheus text as the tests read it: ``NAME{labels}`` -> value.

prometheus_client writes 10 as ``10.0`` and labels in sorted order; Prometheus reads neither as a
difference, so lookups here do not either: ``samples(text)['x{zone="dmz",action="allow"}']``.
"""

from __future__ import annotations


def _key(sample: str) -> str:
    if "{" not in sample:
        return sample
    name, labels = sample.split("{", 1)
    pairs = sorted(p.strip() for p in labels.rstrip("}").split(",") if p.strip())
    return name + "{" + ",".join(pairs) + "}"


class Samples(dict[str, float]):
    def __getitem__(self, sample: str) -> float:
        return super().__getitem__(_key(sample))

    def __contains__(self, sample: object) -> bool:
        return isinstance(sample, str) and super().__contains__(_key(sample))


def samples(text: str) -> Samples:
    out = Samples()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[_key(name)] = float(value)
    return out
