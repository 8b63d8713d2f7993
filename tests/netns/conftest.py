"""Fixtures for the gateway lab: every test builds its own namespaces and removes them, even on failure."""

from __future__ import annotations

import os
import shutil

import pytest

NEEDED = ("ip", "tayga", "ip6tables-restore", "nft")


def _missing() -> list[str]:
    return [tool for tool in NEEDED if shutil.which(tool) is None]


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    here = os.path.dirname(__file__)
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (network namespaces)"
    elif _missing():
        reason = f"needs {', '.join(_missing())}"
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.netns)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
