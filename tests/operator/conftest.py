"""Operator-layer fixtures (helpers live in opkit.py)."""

from __future__ import annotations

from opkit import op_config, state, tls_files  # noqa: F401  (fixtures)
