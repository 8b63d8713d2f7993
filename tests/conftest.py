"""Shared fixtures (the example configuration, zones and policies every layer tests against), and
``ZONECTL_REQUIRE_ALL=1`` (CI sets it): a test that skips because its layer cannot run fails instead.

No layer is exempt: the kind suite (``tests/e2e``) runs against the user's cluster when ``KUBECONFIG``
is set and against the kube layer's own control plane otherwise, so it can always run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from zonectl.core.config import Config, parse_config
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import load_documents, of_kind, read_mapping

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
    if report.skipped and _must_run():  # a skip, or an expected failure (a known defect: none may stay)
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL}=1: this test must run and pass, but it did not: {_reason(report.longrepr)}"
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
    return parse_config(read_mapping(EXAMPLES / "config.yaml"))


@pytest.fixture(scope="session")
def example_zones(example_config: Config) -> ZoneRegistry:
    return ZoneRegistry.from_objects(example_config.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))


@pytest.fixture(scope="session")
def example_policy_bodies() -> list[dict]:
    return of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")


# --- worlds: real state a command must leave byte-identical ---------------------------------------------
WORLD_UPLINK = "zt9up0"  # the uplink a netfilter world has (gateway configs of tests name it)


@dataclass
class NetfilterWorld:
    """A network namespace of the test's own, with an uplink, where gateway commands run (``--netns``)."""

    ns: str
    uplink: str

    @property
    def argv(self) -> list[str]:
        return ["--netns", self.ns]

    def state(self) -> str:
        from zonectl.harness.netns import netfilter_state

        return netfilter_state(self.ns)


@pytest.fixture(scope="module")
def netfilter_world() -> Iterator[NetfilterWorld]:
    """A namespace whose ip6tables/nftables rules tests compare before and after a command that must change
    nothing (``zonectl.harness.netns.netfilter_state``); one per test module, removed after it."""
    import shutil

    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "ip6tables-restore", "nft")):
        pytest.skip("needs root, ip, ip6tables and nft (a network namespace of its own)")
    from zonectl.harness.netns import Netns

    with Netns.create("ztw") as ns:
        ns.run(["ip", "link", "add", WORLD_UPLINK, "type", "veth", "peer", "name", WORLD_UPLINK + "p"])
        for dev in (WORLD_UPLINK, WORLD_UPLINK + "p"):
            ns.run(["ip", "link", "set", dev, "up"])
        yield NetfilterWorld(ns.name, WORLD_UPLINK)
