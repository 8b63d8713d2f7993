"""Golden-file comparison: set ZONECTL_UPDATE_GOLDEN=1 to rewrite the files after a deliberate change."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden") / "gateway"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ZONECTL_UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if os.environ.get("ZONECTL_UPDATE_GOLDEN") != "1":
            raise AssertionError(f"golden file {path} did not exist; written now, check it in and re-run")
    assert text == path.read_text(), f"{name} differs from {path} (ZONECTL_UPDATE_GOLDEN=1 to accept)"
