"""Shared fixtures (the example configuration, zones and policies every layer tests against), and
``ZONECTL_REQUIRE_ALL=1`` (CI sets it): a test that skips because its layer cannot run fails instead.

No layer is exempt: the kind suite (``tests/e2e``) runs against the user's cluster when ``KUBECONFIG``
is set and against the kube layer's own control plane otherwise, so it can always run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from zonectl.core.config import Config, parse_config
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import load_documents, of_kind

# The real control plane, shared by tests/kube and tests/e2e (one per session; see kubeplane.py).
from kubeplane import examples_applied, kube_binaries, zonectl_cluster  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REQUIRE_ALL = "ZONECTL_REQUIRE_ALL"

# Properties assert behaviour, not speed: on a loaded 2-core machine one example can take longer than
# hypothesis' default 200 ms deadline, which would fail a correct test.
settings.register_profile("zonectl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zonectl")


def _must_run() -> bool:
    return os.environ.get(REQUIRE_ALL) == "1"


def _reason(longrepr: object) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _must_run():
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL}=1: this test must run, but it skipped: {_reason(report.longrepr)}"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    """A whole module skipped at import (``pytest.importorskip``) fails the same way."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _must_run():
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL}=1: this module must run, but it skipped: {_reason(report.longrepr)}"
    return None


@pytest.fixture(scope="session")
def example_config() -> Config:
    return parse_config(load_documents([EXAMPLES / "config.yaml"])[0])


@pytest.fixture(scope="session")
def example_zones(example_config: Config) -> ZoneRegistry:
    return ZoneRegistry.from_objects(example_config.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))


@pytest.fixture(scope="session")
def example_policy_bodies() -> list[dict]:
    return of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")
