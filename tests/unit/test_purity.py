"""The pure core imports no I/O edge: kopf, ovsdbapp, pyroute2, kubernetes, aiohttp (ARCHITECTURE.md)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import zonectl.core
import zonectl.render

FORBIDDEN = ("kopf", "ovsdbapp", "ovs", "pyroute2", "kubernetes", "aiohttp", "prometheus_client")
ROOT = Path(__file__).resolve().parents[2]


def _modules(package) -> list[str]:
    return [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_core_and_renderers_import_no_edge() -> None:
    modules = _modules(zonectl.core) + _modules(zonectl.render)
    assert "zonectl.core.layout" in modules and "zonectl.render.ovn_match" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", f"pure modules pulled in I/O libraries: {out.stdout}"
